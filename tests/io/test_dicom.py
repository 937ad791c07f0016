"""DICOM series reading: HU through rescale slope/intercept, ITK geometry, precise errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lungmonai.io import read_ct

from tests.helpers import read_error, rotation, write_dicom_series

SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"


DIRECTION = rotation(0.2, -0.35, 0.5)
SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-170.0, -160.5, -320.25)


def write_series(directory: Path, hu: np.ndarray, slope: float = 1.0, intercept: float = -1024.0,
                 uid: str = SERIES_UID, prefix: str = "slice", direction: np.ndarray = DIRECTION,
                 spacing=SPACING, origin=ORIGIN) -> list[Path]:
    """:func:`write_dicom_series` with this module's oblique geometry."""
    return write_dicom_series(directory, hu, spacing=spacing, origin=origin, direction=direction, slope=slope,
                              intercept=intercept, uid=uid, prefix=prefix)


def hu_volume(shape=(5, 6, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, shape).astype(np.int16)


def sitk_series(directory: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    return reader.Execute()


def assert_matches_sitk(volume, directory: Path) -> None:
    image = sitk_series(directory)
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(volume.geometry.origin_xyz, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-9)


@pytest.mark.parametrize(
    "slope, intercept", [(1.0, -1024.0), (2.0, -1000.0), (0.5, -1024.0)], ids=["int", "slope2", "slope0.5"]
)
def test_series_round_trips_in_hu(tmp_path: Path, slope: float, intercept: float) -> None:
    hu = hu_volume()
    if slope == 2.0:
        hu = hu // 2 * 2  # representable: stored = (hu + 1000) / 2
    paths = write_series(tmp_path / "series", hu, slope, intercept)

    stored = pydicom.dcmread(paths[-1])  # slice index 0
    assert float(stored.RescaleSlope) == slope and float(stored.RescaleIntercept) == intercept
    raw = stored.pixel_array.astype(np.float64)
    assert not np.array_equal(raw, hu[0])  # the rescale really is in play
    np.testing.assert_array_equal(raw * slope + intercept, hu[0])

    volume = read_ct(tmp_path / "series")
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.hu.dtype == np.int16
    assert volume.series_uid == SERIES_UID
    assert volume.source == tmp_path / "series"
    np.testing.assert_allclose(volume.geometry.origin_xyz, ORIGIN, atol=1e-6)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, SPACING, atol=1e-6)
    np.testing.assert_allclose(volume.geometry.direction, DIRECTION, atol=1e-9)
    assert_matches_sitk(volume, tmp_path / "series")


def test_non_dicom_files_are_ignored(tmp_path: Path) -> None:
    hu = hu_volume()
    write_series(tmp_path, hu)
    (tmp_path / "README.txt").write_text("not dicom")
    np.testing.assert_array_equal(read_ct(tmp_path).hu, hu)


def test_empty_directory(tmp_path: Path) -> None:
    assert "empty DICOM directory" in read_error(tmp_path)


def test_directory_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert "no DICOM series found" in read_error(tmp_path)


def test_mixed_series_names_every_uid(tmp_path: Path) -> None:
    write_series(tmp_path, hu_volume(), uid="1.2.3.4", prefix="a")
    write_series(tmp_path, hu_volume(), uid="1.2.3.5", prefix="b")
    message = read_error(tmp_path)
    assert "mixes 2 DICOM series" in message and "1.2.3.4" in message and "1.2.3.5" in message


def test_single_slice_series_is_2d(tmp_path: Path) -> None:
    write_series(tmp_path, hu_volume((1, 6, 7)))
    assert "2D image" in read_error(tmp_path)


def test_missing_middle_slice_is_refused(tmp_path: Path) -> None:
    # ITK only warns and spreads the 4 remaining slices evenly, misplacing those past the gap.
    paths = write_series(tmp_path, hu_volume())
    paths[2].unlink()
    message = read_error(tmp_path)
    assert "non-uniform slice spacing" in message and "5 mm" in message


def test_truncated_slice_is_refused(tmp_path: Path) -> None:
    # GDCM silently leaves a damaged file out of the series.
    paths = write_series(tmp_path, hu_volume())
    paths[0].write_bytes(paths[0].read_bytes()[:-30])
    message = read_error(tmp_path)
    assert "could not be read" in message and paths[0].name in message


def test_gantry_tilted_series_is_refused(tmp_path: Path) -> None:
    # Each slice 1 mm further along y: ITK would stack them straight and misplace all but the first.
    paths = write_series(tmp_path, hu_volume(), direction=np.eye(3), origin=(0.0, 0.0, 0.0))
    for path in paths:
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:g}", f"{round(z / SPACING[2]) * 1.0:g}", f"{z:g}"]
        ds.save_as(path)
    message = read_error(tmp_path)
    assert "not stacked along their normal" in message and "1 mm sideways" in message
