"""Markdown from dataset text: inert wherever it lands in the card.

Everything the card takes from the dataset (``dataset_description.json``,
``participants.json``, table values, file names) goes through ``text``: one line, HTML
escaped, Markdown punctuation escaped, so it cannot inject markup, links or scripts, or
break a table. A DOI or URL becomes a link only when it is a well-formed ``https``/``http``
address or DOI (``link``, ``doi_link``).
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote, urlsplit

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~<>])")
_LINE_START = re.compile(r"^([-+=]|\d+[.)])")  # what would start a list or a heading
_DOI = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/[^\s\"<>]+)$",
                  re.IGNORECASE)


def text(value: Any) -> str:
    """Dataset text as inert Markdown: one line, HTML escaped, Markdown punctuation escaped
    (no links, images, emphasis, code or table breaks can come out of it)."""
    flat = " ".join(str(value).split())
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))
    return _LINE_START.sub(r"\\\1", escaped)


def link(url: Any, label: Any | None = None) -> str:
    """A Markdown link only for a well-formed http(s) URL; anything else is shown as text."""
    raw = str(url).strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>\"'()]",
                                                                              raw):
        return text(raw)
    return f"[{text(label if label is not None else raw)}]({raw})"


def doi_link(doi: Any) -> str:
    match = _DOI.match(str(doi).strip())
    if match is None:
        return text(doi)
    return link("https://doi.org/" + quote(match.group(1), safe="/:;._-"), doi)
