"""The dataset card: YAML that lets ``load_dataset`` restore the features, and a readable body.

The YAML is written with ``datasets``' own serializers (``DatasetInfosDict`` and
``MetadataConfigs`` into a ``huggingface_hub.DatasetCardData``), so ``Nifti`` features come
back from the card even where Parquet metadata were stripped. The body is the maintainer's
prose (the generated repo's ``README.md``) with generated blocks filled in between markers::

    <!-- bids-hf:begin columns -->  ...generated...  <!-- bids-hf:end columns -->

so reruns refresh numbers and tables without touching what the maintainer wrote.

Everything taken from the dataset (``dataset_description.json``, ``participants.json``, table
values, file names) goes through ``_markdown`` where it lands in the body, so it cannot
inject markup, links or scripts, or break a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from ._markdown import doi_link, link, text
from ._plan import data_folder
from ._rows import RowSet
from ._util import human_bytes

BASE_TAGS = ("medical", "neuroimaging", "mri", "nifti", "bids")
_MARKER = re.compile(r"<!-- bids-hf:begin (\w+) -->.*?<!-- bids-hf:end \1 -->", re.DOTALL)
_MARKER_NAME = re.compile(r"<!-- bids-hf:begin (\w+) -->")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)

# dataset_description.json "License" -> Hub license id.
_LICENSES = {
    "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "cc0 1.0": "cc0-1.0", "public domain": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0", "cc by 4.0": "cc-by-4.0", "cc-by": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0", "cc by-sa 4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "pddl": "pddl", "odc-by": "odc-by", "odbl": "odbl",
}
# The Hub license ids a card can carry: those above, and "other" (with a license_name). A
# builder's LICENSE is one of these or "auto"; the template offers exactly these choices.
HUB_LICENSES = ("cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
                "pddl", "odc-by", "odbl", "other")

DEFAULT_SOURCE = """\
# {title}

<!-- bids-hf:begin summary -->
<!-- bids-hf:end summary -->

## About this dataset

Describe the cohort, acquisition and intended use here. This text is kept as written when
the card is regenerated.

<!-- bids-hf:begin columns -->
<!-- bids-hf:end columns -->

<!-- bids-hf:begin privacy -->
<!-- bids-hf:end privacy -->

<!-- bids-hf:begin qc -->
<!-- bids-hf:end qc -->

<!-- bids-hf:begin usage -->
<!-- bids-hf:end usage -->

<!-- bids-hf:begin citation -->
<!-- bids-hf:end citation -->
"""


@dataclass(frozen=True)
class CardMeta:
    """Who the dataset is, as the maintainer declared it (builder class attributes)."""

    slug: str
    pretty_name: str | None = None
    license: str = "auto"  # "auto": mapped from dataset_description.json
    repo_id: str | None = None
    tags: tuple[str, ...] = ()
    gated: bool = False
    gated_prompt: str = ""
    defaced: str | None = None  # attested for this upload (--affirm-defaced), else schema.py's


@dataclass
class StagedStats:
    """What was actually staged, measured: per split rows and bytes, Parquet sizes."""

    num_examples: dict[str, int] = field(default_factory=dict)
    num_bytes: dict[str, int] = field(default_factory=dict)  # bytes of embedded files + values
    download_size: int = 0  # total Parquet size
    shards: int = 0


# What stands where the maintainer's own words go, in the generated repo's README.md and in
# DEFAULT_SOURCE: a card still holding one says nothing about the data.
PLACEHOLDER_PROSE = (
    "Describe the cohort, the acquisition, preprocessing of derivatives and the intended use.",
    "Describe the cohort, acquisition and intended use here.",
)


def unwritten_prose(card: str) -> str | None:
    """The placeholder sentence a card still holds, if any."""
    return next((p for p in PLACEHOLDER_PROSE if p in card), None)


def hub_license(meta: CardMeta, description: Mapping[str, Any]) -> tuple[str, str | None]:
    """(license id, license_name for 'other'): the builder's LICENSE, or "auto" mapped from
    dataset_description.json. "other" always carries a name (the Hub asks for one)."""
    written = str(description.get("License", "")).strip()
    if meta.license and meta.license not in ("auto", "other"):
        return meta.license, None
    mapped = _LICENSES.get(written.lower())
    if mapped and meta.license == "auto":
        return mapped, None
    if not written:
        return "other", "unspecified"
    return "other", re.sub(r"[^a-z0-9]+", "-", written.lower()).strip("-")[:60] or "custom"


def card_data(rowset: RowSet, meta: CardMeta, stats: StagedStats,
              config_stats: Mapping[str, StagedStats] | None = None) -> DatasetCardData:
    description = rowset.index.description
    license_id, license_name = hub_license(meta, description)
    data = DatasetCardData(
        license=license_id,
        pretty_name=meta.pretty_name or description.get("Name") or meta.slug,
        tags=sorted({*BASE_TAGS, *meta.tags}),
        size_categories=[_size_category(sum(stats.num_examples.values()))],
    )
    if license_name:
        data["license_name"] = license_name
    if label_columns(rowset):
        data["task_categories"] = ["image-segmentation"]
    if meta.gated:
        data["extra_gated_prompt"] = meta.gated_prompt or (
            "This dataset contains medical images. Agree to use it only for research and not "
            "to attempt to identify participants.")
        data["extra_gated_fields"] = {
            "Name": "text", "Affiliation": "text",
            "I will not attempt to identify participants": "checkbox"}
    splits = rowset.splits
    infos: dict[str, DatasetInfo] = {"default": _info(rowset.features, stats, splits)}
    configs: dict[str, dict[str, Any]] = {
        "default": {"data_files": _data_files(splits), "default": True}}
    for name, selected in rowset.config_columns.items():
        # Files of its own (data/<name>/): loading a config downloads its bytes only, and
        # the Hub's viewer reads exactly its columns.
        features = datasets.Features({c: rowset.features[c] for c in selected})
        infos[name] = _info(features, (config_stats or {}).get(name, stats), splits)
        configs[name] = {"data_files": _data_files(splits, name)}
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(configs).to_dataset_card_data(data)
    return data


def _info(features: datasets.Features, stats: StagedStats, splits: list[str]) -> DatasetInfo:
    split_dict = SplitDict()
    for split in splits:
        split_dict.add(SplitInfo(name=split, num_bytes=stats.num_bytes.get(split, 0),
                                 num_examples=stats.num_examples.get(split, 0)))
    return DatasetInfo(features=features, splits=split_dict, download_size=stats.download_size,
                       dataset_size=sum(stats.num_bytes.values()))


def _data_files(splits: list[str], config: str | None = None) -> list[dict[str, str]]:
    return [{"split": s, "path": f"{data_folder(config)}/{s}-*"} for s in splits]


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


# -- body --------------------------------------------------------------------------------


def render_card(rowset: RowSet, meta: CardMeta, stats: StagedStats,
                source: str | None = None, extra_blocks: Mapping[str, str] | None = None,
                config_stats: Mapping[str, StagedStats] | None = None) -> str:
    """The full README.md: YAML front matter + the source prose with generated blocks filled."""
    data = card_data(rowset, meta, stats, config_stats)
    title = data.get("pretty_name") or meta.slug
    body = _FRONT_MATTER.sub("", source) if source else DEFAULT_SOURCE.format(title=text(title))
    blocks = {
        "summary": _summary(rowset, stats) + _source(rowset),
        "columns": _columns_table(rowset),
        "privacy": _privacy(rowset, meta),
        "usage": _usage(rowset, meta),
        "citation": _citation(rowset.index.description),
        **(extra_blocks or {}),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        content = blocks.get(name, "")
        return f"<!-- bids-hf:begin {name} -->\n{content.strip()}\n<!-- bids-hf:end {name} -->"

    present = set(_MARKER_NAME.findall(body))
    if not present:
        # Prose written without our markers (e.g. push_to_hub(card=...)): the generated
        # blocks follow it, in DEFAULT_SOURCE's order.
        body = body.rstrip() + "\n\n" + "\n\n".join(
            f"<!-- bids-hf:begin {n} -->\n<!-- bids-hf:end {n} -->"
            for n in _MARKER_NAME.findall(DEFAULT_SOURCE)) + "\n"
    elif "privacy" not in present and blocks["privacy"]:
        # A card source from before this block existed: the decisions must still be shown.
        body = body.rstrip() + "\n\n<!-- bids-hf:begin privacy -->\n<!-- bids-hf:end privacy -->\n"
    body = _MARKER.sub(fill, body)
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def _summary(rowset: RowSet, stats: StagedStats) -> str:
    rows = sum(stats.num_examples.values())
    subjects = len({r.subject for r in rowset.rows})
    per = {"subject": "subject", "session": "session", "image": "image"}[rowset.schema.row]
    description = rowset.index.description
    lines = [
        (f"**{rows} rows** (one per {per}) from **{subjects} subjects**, "
         f"{human_bytes(stats.download_size)} of Parquet in {stats.shards} shard(s), with the "
         "NIfTI files embedded byte for byte."),
    ]
    if description.get("BIDSVersion"):
        lines.append(f"Converted from a BIDS {text(description['BIDSVersion'])} dataset.")
    if len(stats.num_examples) > 1:
        lines.append("Splits: " + ", ".join(f"{s} ({n})" for s, n in stats.num_examples.items())
                     + ".")
    return "\n".join(lines)


def _columns_table(rowset: RowSet) -> str:
    lines = ["## Columns", "", "| column | type | from | description | non-empty |",
             "|---|---|---|---|---|"]
    schema = rowset.schema
    derived = _derived_columns(rowset)
    docs = _table_docs(rowset)
    for name, feature in rowset.features.items():
        about = ""
        if name in rowset.image_columns:
            if schema.row == "image":
                source = "every claimed image"
            else:
                col = schema.image_columns[name]
                source, about = col.query.describe(), col.description
            count = sum(len(r.images.get(name, ())) for r in rowset.rows)
            unit = " files"
        elif name in derived:
            source, count, unit = f"aligned with {derived[name]}", _non_empty(rowset, name), ""
        elif name in schema.metadata_columns():
            table, column, spec = next((t, c, m) for t, cols in schema.metadata_spec().items()
                                       for c, m in cols.items() if m.name == name)
            source = f"{table} ({column})" if column != name else table
            about = spec.description or _describe(docs.get(table, {}).get(column))
            count, unit = _non_empty(rowset, name), ""
        else:
            source, count, unit = "the subject/session folder", len(rowset.rows), ""
        lines.append(f"| `{name}` | {_type_name(feature)} | {text(source)} | {text(about)} "
                     f"| {count}{unit} |")
    lines.append("")
    lines.append("Image cells hold the file's bytes and its BIDS-relative `path`; "
                 "`n/a` in the source tables is null, every other value is kept as written.")
    return "\n".join(lines)


def _table_docs(rowset: RowSet) -> dict[str, dict[str, Any]]:
    """The BIDS data dictionaries (``participants.json``...) of the declared tables."""
    return {table: rowset.index.data_dictionary(table) for table in rowset.schema.metadata}


def _describe(doc: Any) -> str:
    """A data-dictionary entry as one line: description, units, levels."""
    if not isinstance(doc, Mapping):
        return ""
    parts = [str(doc.get("Description") or doc.get("LongName") or "").strip()]
    if doc.get("Units"):
        parts.append(f"(units: {doc['Units']})")
    levels = doc.get("Levels")
    if isinstance(levels, Mapping) and levels:
        parts.append("levels: " + "; ".join(f"{k} = {v}" for k, v in levels.items()))
    return " ".join(p for p in parts if p)


def _derived_columns(rowset: RowSet) -> dict[str, str]:
    """Companion, entity and sidecar columns -> the image column they are aligned with."""
    out: dict[str, str] = {}
    for image in sorted(rowset.image_columns, key=len, reverse=True):  # longest prefix wins
        for name in rowset.features:
            if name.startswith(f"{image}_") and name not in rowset.image_columns:
                out.setdefault(name, image)
    return out


def _non_empty(rowset: RowSet, name: str) -> int:
    return sum(r.values.get(name) not in (None, [], "") for r in rowset.rows)


def _type_name(feature: Any) -> str:
    name = repr(feature).replace("(decode=True)", "()")
    return name.replace("Value('", "").replace("')", "")


def label_columns(rowset: RowSet) -> list[str]:
    """Image columns whose files are labels (segmentations, lesion masks): what makes a
    dataset an image-segmentation dataset. A brain mask is a mask, not a label."""
    labels = []
    for column in rowset.image_columns:
        files = [f for r in rowset.rows for f in r.images.get(column, [])][:50]
        if files and all(_is_label(f.entities) for f in files):
            labels.append(column)
    return labels


def _is_label(entities: Mapping[str, Any]) -> bool:
    suffix, desc = str(entities.get("suffix", "")), str(entities.get("desc", "")).lower()
    if suffix in ("dseg", "label", "probseg"):
        return True
    return suffix in ("mask", "roi") and bool(desc) and desc not in _NOT_LABELS


_NOT_LABELS = {"brain", "head", "skull", "nonbrain", "fov", "bold", "mask"}


def _privacy(rowset: RowSet, meta: CardMeta) -> str:
    """The maintainer's decisions on fields that look personal, and the defacing attestation."""
    privacy = rowset.schema.privacy
    lines = ["## Privacy", ""]
    if privacy.drop:
        keys = ", ".join(f"`{text(k)}`" for k in privacy.drop)
        lines.append(f"- Removed from the published sidecars: {keys} (kept in the source files).")
    for key, why in privacy.allow.items():
        lines.append(f"- Published after review: `{text(key)}`: {text(why)}.")
    lines.append({
        "yes": "- Anatomical images are defaced (attested by the maintainer).",
        "not-needed": "- No image needs defacing (attested by the maintainer: no face in any "
                      "image).",
        None: "- Defacing not attested.",
    }[meta.defaced or privacy.defaced])
    return "\n".join(lines)


def _usage(rowset: RowSet, meta: CardMeta) -> str:
    repo = meta.repo_id or f"<org>/{meta.slug}"
    first = next(iter(rowset.image_columns))
    many = rowset.image_columns[first]
    split = rowset.splits[0]
    access = f'row["{first}"][0]' if many else f'row["{first}"]'
    raw = "List(Nifti(decode=False))" if many else "Nifti(decode=False)"
    lines = [
        "## Usage", "", "```python", "from datasets import load_dataset", "",
        f'ds = load_dataset("{repo}", split="{split}")',
        "row = ds[0]",
        f"img = {access}          # a nibabel image",
        "volume = img.get_fdata()  # numpy array",
        "",
        "# Stream instead of downloading everything first:",
        f'ds = load_dataset("{repo}", split="{split}", streaming=True)',
        "print(next(iter(ds))[\"subject_id\"])",
        "",
        "# The bytes and BIDS path of each image, undecoded:",
        "from datasets import List, Nifti",
        f'raw = ds.cast_column("{first}", {raw})',
        f'print(next(iter(raw))["{first}"]{"[0]" if many else ""}["path"])  # e.g. sub-01/anat/...',
    ]
    for name in rowset.schema.configs:
        lines += ["", f"# Only the '{name}' config: its own files, so only its bytes download",
                  f'ds = load_dataset("{repo}", "{name}", split="{split}")']
    lines += [
        "```",
        "",
        ("Each config has Parquet files of its own (`data/<config>/`): loading one downloads "
        "its columns only, streamed or not. Selecting columns of the full table with "
        "`columns=` still downloads whole files (or, streamed, about 5 MB more per row "
        "group). Each file is one row group of at most about 32 MB; streaming holds a few "
        "files' worth in memory. The Hub's viewer previews rows up to 300 MB."),
    ]
    return "\n".join(lines)


def _source(rowset: RowSet) -> str:
    """Where the data come from: the BIDS dataset and every derivatives pipeline used."""
    description = rowset.index.description
    lines = ["", "", "| source | |", "|---|---|"]
    lines.append(f"| dataset | {text(description.get('Name', rowset.index.root.name))} "
                 f"({text(description.get('DatasetType', 'raw'))}) |")
    used = sorted({f.pipeline for r in rowset.rows for _, f in r.files() if f.pipeline})
    for pipeline in used:
        meta = rowset.index.pipelines.get(pipeline, {})
        made_by = ", ".join(
            " ".join(str(g.get(k, "")) for k in ("Name", "Version")).strip()
            for g in meta.get("GeneratedBy", []) if isinstance(g, Mapping)) or "not stated"
        lines.append(f"| derivatives/{text(pipeline)} | generated by {text(made_by)} |")
    for key, label in (("EthicsApprovals", "ethics approvals"),
                       ("Acknowledgements", "acknowledgements")):
        value = description.get(key)
        if value:
            joined = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            lines.append(f"| {label} | {text(joined)} |")
    return "\n".join(lines)


def _citation(description: Mapping[str, Any]) -> str:
    parts: list[str] = []
    authors = description.get("Authors") or []
    if isinstance(authors, list) and authors:
        parts.append("**Authors:** " + ", ".join(text(a) for a in authors))
    if description.get("DatasetDOI"):
        parts.append(f"**DOI:** {doi_link(description['DatasetDOI'])}")
    if description.get("HowToAcknowledge"):
        parts.append(f"**How to acknowledge:** {text(description['HowToAcknowledge'])}")
    refs = description.get("ReferencesAndLinks") or []
    if isinstance(refs, list) and refs:
        parts.append("**References:**\n" + "\n".join(
            f"- {link(r) if str(r).startswith(('http://', 'https://')) else text(r)}"
            for r in refs))
    funding = description.get("Funding")
    if isinstance(funding, list) and funding:
        parts.append("**Funding:** " + "; ".join(text(f) for f in funding))
    if not parts:
        return ""
    return "## Citation\n\n" + "\n\n".join(parts)
