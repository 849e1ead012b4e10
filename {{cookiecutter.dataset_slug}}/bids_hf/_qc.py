"""The QC picture of the card: slices of the first rows' main image, masks outlined on it.

People would rather look than read: a montage shows at a glance that the images are brains,
the right way up, and that masks sit where they should. Each example gets a band with its
subject and session and a strip of sagittal, coronal and axial slices in RAS display
orientation (NiiVue's: superior and anterior up, subject's left on the left). When the
example has a mask on the same voxel grid, the slices go through the mask's centre and the
mask is drawn as an outline over a light translucent fill, so the anatomy under it stays
visible; otherwise they go through the middle of the volume. Slices are read in bounded
memory (``_slices``); the PNG is encoded with Pillow and is byte-for-byte deterministic.

This module also decides which image columns hold masks (``mask_columns``, by column name;
``mask_columns_of``, by the BIDS suffix of the files first): the card and the review page
use the same answer.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ._markdown import text
from ._rows import Row, RowSet
from ._slices import (
    Plane,
    SliceError,
    Slices,
    grey_picture,
    mask_picture,
    read_grid,
    read_slices,
    window,
)
from ._state import write_atomic

log = logging.getLogger(__name__)

QC_FILE = "qc.png"
PANEL = 220  # pixels per panel side: large enough to see a lesion's edge
GAP = 4  # pixels between panels and between examples
BAND = 24  # pixels of the label band above each example's strip
MASK_SUFFIXES = frozenset({"mask", "dseg", "probseg", "label", "roi"})  # BIDS derivatives
_MASK_HINTS = ("mask", "lesion", "seg", "label", "roi")  # "seg" covers dseg
_OUTLINE = (255, 60, 40)
_FILL_ALPHA = 0.22  # the anatomy under a mask stays readable
_TEXT = (225, 225, 225)
_DIM = (140, 140, 140)
_SIDES = {"sagittal": ("P", "A"), "coronal": ("L", "R"), "axial": ("L", "R")}


@dataclass(frozen=True)
class QcPicture:
    path: Path
    image_column: str
    mask_column: str | None
    rows: list[str]  # row keys, top to bottom
    overlaid: int  # examples whose mask was drawn
    skipped: list[str] = field(default_factory=list)  # unreadable images, with the reason

    def card_block(self) -> str:
        where = "through the middle of each volume"
        if self.mask_column and self.overlaid:
            where = (f"through the centre of the `{self.mask_column}` mask (outlined in red) "
                     "where the example has one, else through the middle")
        return (f"## Quality control\n\n![Slices of the first rows]({self.path.name})\n\n"
                f"Sagittal, coronal and axial slices of `{self.image_column}`, {where}; one "
                f"band per example, labelled with its subject and session: "
                f"{', '.join(text(r) for r in self.rows)}.")


def mask_columns(columns: list[str]) -> list[str]:
    """Columns that hold masks or segmentations, judged by their names only."""
    return [c for c in columns if any(h in c.lower() for h in _MASK_HINTS)]


def mask_columns_of(rowset: RowSet) -> list[str]:
    """Columns that hold masks: their files' BIDS suffix (mask, dseg, probseg, ...) decides;
    a column whose files say nothing (no BIDS suffix) falls back to its name."""
    by_name = set(mask_columns(list(rowset.image_columns)))
    found: list[str] = []
    for column in rowset.image_columns:
        suffixes = {str(f.entities.get("suffix", "")) for row in rowset.rows
                    for f in row.images.get(column, ())}
        suffixes.discard("")
        if (suffixes and suffixes <= MASK_SUFFIXES) or (not suffixes and column in by_name):
            found.append(column)
    return found


def write_qc_picture(rowset: RowSet, out_dir: Path, n_rows: int = 6) -> QcPicture | None:
    """Write ``qc.png`` into ``out_dir``; ``None`` when no row has an image to show."""
    columns = list(rowset.image_columns)
    masks = mask_columns_of(rowset)
    main = next((c for c in columns if c not in masks), columns[0] if columns else None)
    if main is None:
        return None
    mask = next((m for m in masks if m != main), None)
    root = rowset.index.root
    strips: list[Image.Image] = []
    labels: list[str] = []
    skipped: list[str] = []
    overlaid = 0
    for row in rowset.rows:
        if len(strips) == n_rows:
            break
        if not row.images.get(main):
            continue
        try:
            image, mask_slices = _row_slices(root, row, main, mask)
        except SliceError as err:
            log.warning("QC picture: %s", err)
            skipped.append(str(err))
            continue
        overlaid += mask_slices is not None
        strips.append(_strip(row, image, mask_slices))
        labels.append(row.key)
    if not strips:
        return None
    path = out_dir / QC_FILE
    png = io.BytesIO()
    # Level 6 (zlib's default): 12% larger than level 9 here, in a seventh of the time.
    _stack(strips).save(png, format="PNG", optimize=False, compress_level=6)
    # Atomically, as every staged file. Saved to the path, Pillow 13 left an empty qc.png
    # when the disk filled: closing its file raises ENOSPC again before its cleanup runs.
    write_atomic(path, png.getvalue())
    return QcPicture(path, main, mask, labels, overlaid, skipped)


def _row_slices(root: Path, row: Row, main: str,
                mask: str | None) -> tuple[Slices, Slices | None]:
    """The main image's slices, through the mask's centre when it shares the voxel grid."""
    image_path = root / row.images[main][0].path
    if mask is None or not row.images.get(mask):
        return read_slices(image_path), None
    mask_path = root / row.images[mask][0].path
    try:
        located = read_slices(mask_path)
    except SliceError as err:
        log.warning("QC picture: %s (drawn without its mask)", err)
        return read_slices(image_path), None
    if located.centroid is None or read_grid(image_path) != located.grid:
        return read_slices(image_path), None  # empty, or another grid: an overlay would mislead
    image = read_slices(image_path, at=located.centroid)
    return image, read_slices(mask_path, at=image.index)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _strip(row: Row, image: Slices, mask: Slices | None) -> Image.Image:
    """The label band over three panels side by side."""
    width = 3 * PANEL + 2 * GAP
    strip = Image.new("RGB", (width, BAND + PANEL), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    label = f"sub-{row.subject}" + (f"   ses-{row.session}" if row.session else "")
    draw.text((6, 4), label, fill=_TEXT, font=_font(15))
    levels = window(image.planes)
    names = ("sagittal", "coronal", "axial")
    for k, (name, plane) in enumerate(zip(names, image.planes, strict=True)):
        over = None if mask is None else mask.planes[k]
        panel = _panel(plane, over, levels)
        x = k * (PANEL + GAP)
        strip.paste(panel, (x + (PANEL - panel.width) // 2, BAND + (PANEL - panel.height) // 2))
        low, high = _SIDES[name]
        small = _font(11)
        draw.text((x + 3, BAND + PANEL - 14), low, fill=_DIM, font=small)
        draw.text((x + PANEL - 10, BAND + PANEL - 14), high, fill=_DIM, font=small)
    return strip


def _panel(plane: Plane, mask: Plane | None, levels: tuple[float, float]) -> Image.Image:
    grey = grey_picture(plane, PANEL, levels).convert("RGB")
    if mask is None:
        return grey
    inside = mask_picture(mask, PANEL)
    if inside.size != grey.size:
        return grey
    edge = np.asarray(inside) > np.asarray(inside.filter(ImageFilter.MinFilter(3)))
    rgb = np.asarray(grey, dtype=np.float32).copy()
    on = np.asarray(inside) > 0
    rgb[on] = (1 - _FILL_ALPHA) * rgb[on] + _FILL_ALPHA * np.array(_OUTLINE, np.float32)
    rgb[edge] = _OUTLINE
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _stack(strips: list[Image.Image]) -> Image.Image:
    width = strips[0].width
    height = sum(s.height for s in strips) + GAP * (len(strips) - 1)
    picture = Image.new("RGB", (width, height), (0, 0, 0))
    y = 0
    for strip in strips:
        picture.paste(strip, (0, y))
        y += strip.height + GAP
    return picture
