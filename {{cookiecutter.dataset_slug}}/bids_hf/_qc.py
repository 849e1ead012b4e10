"""The QC picture: mid-slices of the first rows' main image, mask in red, one PNG in the card.

People would rather look than read: a montage shows at a glance that the images are
brains, the right way up, and that masks sit where they should. One row per example
(sagittal, coronal, axial mid-slices, reoriented to RAS so every row looks the same way),
the mask column overlaid when it is on the same voxel grid. The PNG is encoded here with
zlib (no imaging dependency) and is byte-for-byte deterministic.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ._rows import Row, RowSet

QC_FILE = "qc.png"
_MASK_HINTS = ("mask", "lesion", "seg", "label", "roi")  # "seg" covers dseg
_PANEL = 128  # pixels per panel side
_GAP = 2
_RED = np.array([230, 40, 40], dtype=np.float32)


@dataclass(frozen=True)
class QcPicture:
    path: Path
    image_column: str
    mask_column: str | None
    rows: list[str]
    overlaid: int  # rows whose mask was drawn

    def card_block(self) -> str:
        mask = (f", with `{self.mask_column}` in red" if self.mask_column and self.overlaid
                else "")
        return (f"## Quality control\n\n![Mid-slices of the first rows]({self.path.name})\n\n"
                f"Sagittal, coronal and axial mid-slices of `{self.image_column}`{mask}, one row "
                f"per example: {', '.join(self.rows)}.")


def mask_columns(columns: list[str]) -> list[str]:
    """Columns that hold masks or segmentations, by name (the card and the picture agree)."""
    return [c for c in columns if any(h in c.lower() for h in _MASK_HINTS)]


def write_qc_picture(rowset: RowSet, out_dir: Path, n_rows: int = 6) -> QcPicture | None:
    """Write ``qc.png`` into ``out_dir``; ``None`` when no row has an image to show."""
    columns = list(rowset.image_columns)
    masks = mask_columns(columns)
    main = next((c for c in columns if c not in masks), columns[0] if columns else None)
    if main is None:
        return None
    mask = masks[0] if masks and masks[0] != main else None
    chosen = [r for r in rowset.rows if r.images.get(main)][:n_rows]
    if not chosen:
        return None
    root = rowset.index.root
    strips, labels, overlaid = [], [], 0
    for row in chosen:
        volume, img = _volume(root / row.images[main][0].path)
        mask_volume = _mask_for(root, row, mask, img)
        overlaid += mask_volume is not None
        strips.append(_strip(volume, img.header.get_zooms()[:3], mask_volume))
        labels.append(row.key)
    picture = _stack(strips)
    path = out_dir / QC_FILE
    write_png(path, picture)
    return QcPicture(path, main, mask, labels, overlaid)


def _volume(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.as_closest_canonical(nib.load(path))
    proxy = img.dataobj
    data = np.asarray(proxy[..., 0] if len(img.shape) > 3 else proxy, dtype=np.float32)
    while data.ndim > 3:  # 5-D images: first of everything beyond space
        data = data[..., 0]
    return data, img


def _mask_for(root: Path, row: Row, column: str | None, image: nib.Nifti1Image) -> np.ndarray | None:
    if column is None or not row.images.get(column):
        return None
    mask, _ = _volume(root / row.images[column][0].path)
    if mask.shape != image.shape[:3]:
        return None  # a different voxel grid: drawing it would mislead
    return mask > 0


def _strip(volume: np.ndarray, zooms: tuple[float, ...], mask: np.ndarray | None) -> np.ndarray:
    """Three panels side by side: sagittal, coronal, axial through the volume's centre."""
    lo, hi = np.percentile(volume[volume > 0], [1, 99]) if np.any(volume > 0) else (0.0, 1.0)
    scale = 255.0 / max(hi - lo, 1e-6)
    gray = np.clip((volume - lo) * scale, 0, 255)
    cx, cy, cz = (n // 2 for n in volume.shape)
    zx, zy, zz = (float(z) or 1.0 for z in zooms)
    # RAS voxel axes -> display (rows top-down, columns left-right), superior/anterior up.
    planes = [
        (gray[cx, :, :], None if mask is None else mask[cx, :, :], zy, zz),  # sagittal (y, z)
        (gray[:, cy, :], None if mask is None else mask[:, cy, :], zx, zz),  # coronal (x, z)
        (gray[:, :, cz], None if mask is None else mask[:, :, cz], zx, zy),  # axial (x, y)
    ]
    panels = [_panel(plane, overlay, dw, dh) for plane, overlay, dw, dh in planes]
    gap = np.zeros((_PANEL, _GAP, 3), dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def _panel(plane: np.ndarray, overlay: np.ndarray | None, dw: float, dh: float) -> np.ndarray:
    """One slice as an RGB square: first axis left-right, second bottom-up, physical aspect."""
    image = np.flipud(plane.T)  # rows: second axis, top = high values (superior/anterior)
    over = None if overlay is None else np.flipud(overlay.T)
    height_mm, width_mm = image.shape[0] * dh, image.shape[1] * dw
    fit = _PANEL / max(height_mm, width_mm)
    h = max(1, round(height_mm * fit))
    w = max(1, round(width_mm * fit))
    rows = np.minimum((np.arange(h) * image.shape[0]) // h, image.shape[0] - 1)
    cols = np.minimum((np.arange(w) * image.shape[1]) // w, image.shape[1] - 1)
    rgb = np.repeat(image[np.ix_(rows, cols)][..., None], 3, axis=2)
    if over is not None:
        hit = over[np.ix_(rows, cols)]
        rgb[hit] = 0.45 * rgb[hit] + 0.55 * _RED
    canvas = np.zeros((_PANEL, _PANEL, 3), dtype=np.uint8)
    top, left = (_PANEL - h) // 2, (_PANEL - w) // 2
    canvas[top:top + h, left:left + w] = np.clip(rgb, 0, 255).astype(np.uint8)
    return canvas


def _stack(strips: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros((_GAP, strips[0].shape[1], 3), dtype=np.uint8)
    parts: list[np.ndarray] = []
    for strip in strips:
        parts += [strip, gap]
    return np.concatenate(parts[:-1], axis=0)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG (filter 0 on every scanline; zlib level 9; no timestamps)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def read_png(path: Path) -> np.ndarray:
    """Decode a PNG written by ``write_png`` (for tests and checks)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, width = 8, b"", 0
    height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if zlib.crc32(tag + body) & 0xFFFFFFFF != struct.unpack(">I", data[pos + 8 + length:
                                                                          pos + 12 + length])[0]:
            raise ValueError(f"{path}: bad CRC in {tag!r}")
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 3)
    if np.any(raw[:, 0]):
        raise ValueError(f"{path}: only filter 0 scanlines are supported")
    return raw[:, 1:].reshape(height, width, 3)
