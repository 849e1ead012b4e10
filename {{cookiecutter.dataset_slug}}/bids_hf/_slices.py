"""Slices of a NIfTI image read in bounded memory, and their rendering as grey pictures.

The QC picture of the card and the thumbnails of the review page both need three planes
through a volume, never the volume itself: a 256³ float copy is 64 MB, and a damaged header
may claim 100 GB. Here the first 3-D volume is read through nibabel's array proxy one slab
(one slice along the third voxel axis) at a time, *forward only*, because a backwards seek in
a ``.nii.gz`` restarts decompression from the first byte. From each slab we keep one line
of the sagittal and coronal planes, and the whole slab when it is the axial plane: memory
stays at about two slices whatever the file's size. Planes are then turned to RAS display
orientation (superior and anterior up, subject's left on the left, as NiiVue draws them), so
every image looks the same way whatever its voxel order.

Images come from a file path (the BIDS tree) or from bytes (a Parquet cell of a staged
folder). This module owns no policy about which image to show: ``_qc`` and ``_review_page`` do.
"""

from __future__ import annotations

import gzip
import io
import struct
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.fileholders import FileHolder
from PIL import Image

_gzip: types.ModuleType
try:  # the same faster, equally strict inflate as the image checks (_inspect)
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    _gzip = gzip

MAX_PLANE_VOXELS = 1 << 22  # 2048 x 2048: a larger slice is a damaged header, not an MRI
PLANES = ("sagittal", "coronal", "axial")


class SliceError(ValueError):
    """An image whose slices cannot be read (damaged, truncated, or absurd dimensions)."""


@dataclass(frozen=True)
class Plane:
    """One plane in display orientation: rows top-down, columns left-right; mm per pixel."""

    data: np.ndarray  # float32, 2-D
    row_mm: float
    col_mm: float


@dataclass(frozen=True)
class Grid:
    """The voxel grid of an image: its 3-D shape and voxel-to-world affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.shape == other.shape and \
            bool(np.allclose(self.affine, other.affine, atol=1e-3))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Slices:
    """Three orthogonal planes of the first volume through voxel ``index``."""

    sagittal: Plane
    coronal: Plane
    axial: Plane
    index: tuple[int, int, int]  # voxel indices (file's voxel axes) the planes go through
    grid: Grid
    centroid: tuple[int, int, int] | None  # voxel centre of the non-zero voxels; None: all zero
    integer_valued: bool  # stored as integers without scaling (masks and label maps are)

    @property
    def planes(self) -> tuple[Plane, Plane, Plane]:
        return self.sagittal, self.coronal, self.axial


def read_slices(source: Path | bytes, at: Sequence[int] | None = None,
                *, name: str | None = None) -> Slices:
    """Planes of the first volume of ``source`` through voxel ``at`` (default: the centre of
    the volume along each display axis). ``name`` labels errors for bytes sources."""
    label = name or (str(source) if isinstance(source, Path) else "image bytes")
    try:
        with _opened(source) as (img, size):
            return _read(img, size, at, label)
    except SliceError:
        raise
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError,
            struct.error) as err:
        raise SliceError(f"{label}: cannot read its slices ({err}). Check that the file is "
                         "a complete NIfTI image (e.g. load it with nibabel).") from err


def read_grid(source: Path | bytes, *, name: str | None = None) -> Grid:
    """The voxel grid of ``source`` from its header alone (no voxel is read)."""
    label = name or (str(source) if isinstance(source, Path) else "image bytes")
    try:
        with _opened(source) as (img, _):
            return Grid(_shape3(img.shape), np.asarray(_affine(img)))
    except SliceError:
        raise
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError,
            struct.error) as err:
        raise SliceError(f"{label}: cannot read its header ({err})") from err


def _shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    full = (*(int(n) for n in shape), 1, 1, 1)
    return full[0], full[1], full[2]


def _affine(img: nib.Nifti1Image) -> np.ndarray:
    return img.affine if img.affine is not None else np.eye(4)


@contextmanager
def _opened(source: Path | bytes) -> Iterator[tuple[nib.Nifti1Image, int | None]]:
    """The image over a file object we own (closed on exit), and the stored size when known
    without decompressing (uncompressed files only)."""
    raw: io.BufferedIOBase = (open(source, "rb") if isinstance(source, Path)  # noqa: SIM115
                              else io.BytesIO(source))
    try:
        head = raw.read(2)
        raw.seek(0)
        compressed = head == b"\x1f\x8b"
        stream: io.BufferedIOBase = _gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        size = None if compressed else raw.seek(0, io.SEEK_END)
        stream.seek(0)
        image_class = _image_class(stream.read(4))
        stream.seek(0)
        holder = FileHolder(fileobj=stream)
        img = image_class.from_file_map({"header": holder, "image": holder})
        yield img, size
    finally:
        raw.close()


def _image_class(first: bytes) -> type[nib.Nifti1Image]:
    if len(first) < 4:
        raise SliceError("shorter than a NIfTI header")
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(order + "i", first)
        if sizeof_hdr == 348:
            return nib.Nifti1Image
        if sizeof_hdr == 540:
            return nib.Nifti2Image
    raise SliceError("not a NIfTI-1 or NIfTI-2 header")


def _read(img: nib.Nifti1Image, stored: int | None, at: Sequence[int] | None,
          label: str) -> Slices:
    header = img.header
    shape = _shape3(img.shape)
    if min(shape) < 1:
        raise SliceError(f"{label}: its header gives an empty volume {shape}")
    slab = shape[0] * shape[1]
    for a, b in ((0, 1), (0, 2), (1, 2)):  # every plane we keep, so memory stays bounded
        if shape[a] * shape[b] > MAX_PLANE_VOXELS:
            raise SliceError(f"{label}: its header claims a volume of {shape} voxels, with "
                             f"slices of more than {MAX_PLANE_VOXELS:,} voxels; the header is "
                             "probably damaged")
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    needed = int(header.get_data_offset()) + slab * shape[2] * itemsize
    if stored is not None and stored < needed:
        raise SliceError(f"{label}: the file has {stored:,} bytes but its header needs "
                         f"{needed:,} for the first volume; the file is truncated or the "
                         "header is wrong")
    affine = _affine(img)
    ornt = nib.io_orientation(affine)  # voxel axis -> (RAS axis, flip)
    index = tuple(int(i) for i in at) if at is not None else _centre(shape, ornt)
    if len(index) != 3 or any(not 0 <= i < n for i, n in zip(index, shape, strict=True)):
        raise SliceError(f"{label}: voxel {index} is outside the volume {shape}")
    i0, i1, i2 = index
    ndim = len(img.shape)
    extra = (0,) * (ndim - 3)  # the first volume of 4-D and 5-D images
    proxy = img.dataobj
    count, sums = 0, np.zeros(3)
    rows0, rows1 = np.arange(shape[0]), np.arange(shape[1])
    for k in range(shape[2]):  # forward only: each slab follows the previous one in the file
        slicer = (slice(None), slice(None), k, *extra) if ndim >= 3 else ()  # 2-D: k is 0
        data = np.asarray(proxy[slicer], dtype=np.float32)
        data = np.nan_to_num(data.reshape(shape[0], shape[1]), nan=0.0, posinf=0.0, neginf=0.0)
        if k == 0:  # allocated once a slab was read: a lying header fails before this
            plane0 = np.zeros((shape[1], shape[2]), np.float32)  # voxel axes (1, 2)
            plane1 = np.zeros((shape[0], shape[2]), np.float32)  # voxel axes (0, 2)
            plane2 = np.zeros((shape[0], shape[1]), np.float32)  # voxel axes (0, 1)
        plane0[:, k] = data[i0, :]
        plane1[:, k] = data[:, i1]
        if k == i2:
            plane2[:] = data
        nonzero = data != 0
        n = int(nonzero.sum())
        if n:
            count += n
            sums += (float(nonzero.sum(axis=1) @ rows0), float(nonzero.sum(axis=0) @ rows1),
                     float(n * k))
    centroid = (round(sums[0] / count), round(sums[1] / count), round(sums[2] / count)) \
        if count else None
    zooms = (*(float(z) or 1.0 for z in header.get_zooms()[:3]), 1.0, 1.0)[:3]
    planes = {0: (plane0, (1, 2)), 1: (plane1, (0, 2)), 2: (plane2, (0, 1))}
    by_ras = {int(ornt[v, 0]): v for v in range(3)}  # RAS axis -> voxel axis
    shown = [_display(*planes[by_ras[ras]], ornt, zooms) for ras in range(3)]
    slope, inter = header.get_slope_inter()
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    integer = np.issubdtype(header.get_data_dtype(), np.integer) and not scaled
    return Slices(shown[0], shown[1], shown[2], index=(i0, i1, i2),
                  grid=Grid(shape, np.asarray(affine)),
                  centroid=centroid, integer_valued=bool(integer))


def _centre(shape: tuple[int, int, int], ornt: np.ndarray) -> tuple[int, int, int]:
    """The middle voxel, counted along RAS so a flipped axis gives the same anatomy."""
    out = []
    for v in range(3):
        n = shape[v]
        out.append(n // 2 if ornt[v, 1] > 0 else n - 1 - n // 2)
    return out[0], out[1], out[2]


def _display(plane: np.ndarray, axes: tuple[int, int], ornt: np.ndarray,
             zooms: tuple[float, ...]) -> Plane:
    """A plane over two voxel axes -> display orientation: the lower RAS axis runs left to
    right (R or A increasing), the higher one bottom to top (A or S increasing)."""
    a, b = axes
    if ornt[a, 1] < 0:
        plane = plane[::-1, :]
    if ornt[b, 1] < 0:
        plane = plane[:, ::-1]
    za, zb = zooms[a], zooms[b]
    if ornt[a, 0] > ornt[b, 0]:
        plane, za, zb = plane.T, zb, za
    # rows: second axis, top = high values; columns: first axis.
    return Plane(np.ascontiguousarray(plane.T[::-1, :]), row_mm=zb, col_mm=za)


def window(planes: Sequence[Plane]) -> tuple[float, float]:
    """Grey levels: 1st to 99th percentile of the non-zero pixels of ``planes``."""
    values = np.concatenate([p.data[p.data != 0].ravel() for p in planes])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-6))


def fit(plane: Plane, box: int) -> tuple[int, int]:
    """(width, height) in pixels of ``plane`` drawn at its physical aspect within ``box``."""
    height_mm = plane.data.shape[0] * plane.row_mm
    width_mm = plane.data.shape[1] * plane.col_mm
    scale = box / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def grey_picture(plane: Plane, box: int, levels: tuple[float, float]) -> Image.Image:
    """``plane`` as an 8-bit grey picture fitted in ``box`` pixels, physical aspect kept."""
    lo, hi = levels
    grey = np.clip((plane.data - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).resize(fit(plane, box), Image.Resampling.BILINEAR)


def mask_picture(plane: Plane, box: int) -> Image.Image:
    """The non-zero pixels of ``plane`` as a 0/255 picture, same size as ``grey_picture``."""
    on = (plane.data != 0).astype(np.uint8) * 255
    return Image.fromarray(on).resize(fit(plane, box), Image.Resampling.NEAREST)
