"""NIfTI reading: geometry equals SimpleITK's (LPS), whatever RAS affine nibabel wrote."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from lungmonai.io import read_ct

from tests.helpers import read_error, rotation

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def hu_volume(shape=(4, 5, 6)) -> np.ndarray:
    return np.random.default_rng(1).integers(-1024, 2000, shape).astype(np.int16)


def write_nifti(path: Path, hu_irc: np.ndarray, affine_ras: np.ndarray, dtype=np.int16,
                slope: float | None = None, inter: float | None = None) -> Path:
    """nibabel stores (i, j, k) = (col, row, index), the transpose of our irc array."""
    image = nib.Nifti1Image(np.asarray(hu_irc).T.astype(dtype), affine_ras)
    image.set_qform(affine_ras, code=1)
    image.set_sform(affine_ras, code=1)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    return path


def affine(direction: np.ndarray, spacing, origin) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = direction * np.asarray(spacing)
    out[:3, 3] = origin
    return out


def assert_matches_sitk(path: Path) -> None:
    volume = read_ct(path)
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(volume.geometry.origin_xyz, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-9)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_ras_affine_becomes_lps_geometry(tmp_path: Path, suffix: str) -> None:
    hu = hu_volume()
    direction_ras = rotation(0.3, -0.5, 1.1)
    assert not np.allclose(direction_ras, direction_ras.T)
    spacing, origin_ras = (0.7, 0.8, 2.5), (100.0, -50.0, 30.0)
    path = write_nifti(tmp_path / f"1.2.840.1{suffix}", hu, affine(direction_ras, spacing, origin_ras))

    volume = read_ct(path)
    np.testing.assert_array_equal(volume.hu, hu)
    np.testing.assert_allclose(volume.geometry.origin_xyz, RAS_TO_LPS @ origin_ras, atol=1e-5)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, spacing, atol=1e-5)
    np.testing.assert_allclose(volume.geometry.direction, RAS_TO_LPS @ direction_ras, atol=1e-5)
    assert volume.series_uid == "1.2.840.1"
    assert_matches_sitk(path)


def test_radiological_flip_keeps_positive_spacing(tmp_path: Path) -> None:
    # The usual CT affine: x and y axes run right-to-left / anterior-to-posterior in RAS.
    path = write_nifti(tmp_path / "ct.nii.gz", hu_volume(), np.diag([-0.7, -0.7, 2.0, 1.0]))
    volume = read_ct(path)
    np.testing.assert_allclose(volume.geometry.direction, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, (0.7, 0.7, 2.0))
    assert_matches_sitk(path)


def test_simpleitk_written_nifti_round_trips(tmp_path: Path) -> None:
    hu = hu_volume()
    image = sitk.GetImageFromArray(hu)
    image.SetOrigin((-10.0, 20.0, -30.0))
    image.SetSpacing((0.6, 0.9, 1.25))
    image.SetDirection((RAS_TO_LPS @ rotation(-0.2, 0.4, 0.7)).ravel())
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    volume = read_ct(path)
    np.testing.assert_array_equal(volume.hu, hu)
    np.testing.assert_allclose(volume.geometry.direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-6)
    assert_matches_sitk(path)


def test_scl_slope_and_inter_are_applied(tmp_path: Path) -> None:
    stored = np.random.default_rng(2).integers(0, 1500, (4, 5, 6)).astype(np.int16)
    path = write_nifti(tmp_path / "ct.nii.gz", stored, np.diag([0.7, 0.7, 2.0, 1.0]), slope=2.0, inter=-1024.0)
    assert np.array_equal(np.asanyarray(nib.load(path).dataobj.get_unscaled()).T, stored)
    np.testing.assert_array_equal(read_ct(path).hu, stored * 2 - 1024)
    assert_matches_sitk(path)


def test_4d_with_one_time_point_is_3d(tmp_path: Path) -> None:
    hu = hu_volume()
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu.T[..., None], np.eye(4)), str(path))
    np.testing.assert_array_equal(read_ct(path).hu, hu)
    assert_matches_sitk(path)


def test_single_slice_nifti_is_2d(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "ct.nii.gz", hu_volume((1, 5, 6)), np.eye(4))
    assert "2D image" in read_error(path)


def test_2d_nifti_is_2d(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(np.zeros((6, 5), np.int16), np.eye(4)), str(path))
    assert "2D image" in read_error(path)


def test_nan_voxels(tmp_path: Path) -> None:
    hu = hu_volume().astype(np.float32)
    hu[1, 2, 3] = np.nan
    path = write_nifti(tmp_path / "ct.nii.gz", hu, np.eye(4), dtype=np.float32)
    # Why voxels do not come from ITK: its nifticlib turns NaN into 0 HU without a word.
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[1, 2, 3] == 0
    message = read_error(path)
    assert "NaN or inf" in message and "(1, 2, 3)" in message


def test_values_outside_int16(tmp_path: Path) -> None:
    hu = hu_volume().astype(np.int32)
    hu[0, 0, 0] = 70000
    path = write_nifti(tmp_path / "ct.nii.gz", hu, np.eye(4), dtype=np.int32)
    assert "outside the int16 range" in read_error(path)


def test_garbage_nifti(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii"
    path.write_bytes(b"not a nifti file" * 40)
    assert "not a readable NIfTI file" in read_error(path)


def test_truncated_nifti(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "ct.nii", hu_volume((8, 16, 16)), np.eye(4))
    path.write_bytes(path.read_bytes()[:2000])
    # ITK reads this short file without complaint; we must not.
    assert sitk.ReadImage(str(path)).GetSize() == (16, 16, 8)
    assert "truncated or corrupt" in read_error(path)
