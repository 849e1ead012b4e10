"""Slices of a NIfTI image for the QC picture and the review page's thumbnails: the canonical
planes whatever the voxel order, the first volume of a 4-D image, and bounded memory, even
when a header claims 100 GB."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids_hf._slices import MAX_PLANE_VOXELS, SliceError, read_slices


def _marked_volume(shape: tuple[int, int, int] = (20, 30, 40)) -> np.ndarray:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 50, size=shape).astype(np.int16)
    data[15, 5, 35] = 1000  # one bright voxel: right, posterior, superior
    return data



def test_slices_are_the_canonical_planes_whatever_the_voxel_order(tmp_path: Path) -> None:
    data = _marked_volume()
    ras = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    # The same anatomy stored left-to-right and anterior-to-posterior, and with axes permuted.
    lps = nib.Nifti1Image(data[::-1, ::-1, :].copy(), np.diag([-2.0, -3.0, 4.0, 1.0]))
    zyx = nib.Nifti1Image(np.transpose(data, (2, 1, 0)).copy(),
                          np.array([[0, 0, 2.0, 0], [0, 3.0, 0, 0], [4.0, 0, 0, 0], [0, 0, 0, 1]]))
    canonical = np.asarray(ras.dataobj, dtype=np.float32)
    expected = [np.flipud(canonical[10, :, :].T), np.flipud(canonical[:, 15, :].T),
                np.flipud(canonical[:, :, 20].T)]
    for name, img in (("ras.nii.gz", ras), ("lps.nii", lps), ("zyx.nii.gz", zyx)):
        nib.save(img, tmp_path / name)
        slices = read_slices(tmp_path / name)
        for plane, want in zip(slices.planes, expected, strict=True):
            np.testing.assert_array_equal(plane.data, want, err_msg=name)
        assert [(p.row_mm, p.col_mm) for p in slices.planes] == [(4, 3), (4, 2), (3, 2)], name
    marked = read_slices(tmp_path / "ras.nii.gz", at=(15, 5, 35))
    assert marked.axial.data[29 - 5, 15] == 1000 and marked.coronal.data[39 - 35, 15] == 1000
    assert read_slices((tmp_path / "zyx.nii.gz").read_bytes(), name="cell").axial.data.shape == \
        (30, 20)



def test_slices_of_a_4d_image_come_from_its_first_volume(tmp_path: Path) -> None:
    data = np.stack([np.full((6, 7, 8), t, np.int16) for t in (5, 9, 9)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bold.nii.gz")
    slices = read_slices(tmp_path / "bold.nii.gz")
    assert all(np.all(p.data == 5) for p in slices.planes)



def test_slices_are_read_in_bounded_memory(tmp_path: Path) -> None:
    big = np.random.default_rng(0).integers(0, 1000, size=(256, 256, 160), dtype=np.int16)
    nib.save(nib.Nifti1Image(big, np.eye(4)), tmp_path / "big.nii.gz")  # 20 MB of voxels
    tracemalloc.start()
    try:
        slices = read_slices(tmp_path / "big.nii.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(slices.coronal.data, np.flipud(big[:, 128, :].T))
    assert peak < 4_000_000, f"{peak:,} bytes traced for 20 MB of voxels (a slice is 256 kB)"



def test_a_header_claiming_100_gb_cannot_exhaust_memory(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((2048, 2048, 2048, 6))  # 2048² slices pass; the volumes are 100 GB
    raw = header.binaryblock + b"\0" * 4 + b"\1" * 4096
    (tmp_path / "liar.nii.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "liar.nii").write_bytes(raw)
    header.set_data_shape((4096, 4096, 8))  # one slice alone would be 64 MB as floats
    (tmp_path / "wide.nii.gz").write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    for name, reason in (("liar.nii.gz", "cannot read"), ("liar.nii", "truncated"),
                         ("wide.nii.gz", f"more than {MAX_PLANE_VOXELS:,}")):
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(SliceError, match=reason):
                read_slices(tmp_path / name)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 40_000_000, f"{name}: {peak:,} bytes"
        assert time.monotonic() - start < 5
