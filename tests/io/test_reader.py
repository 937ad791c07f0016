"""read_ct dispatch and the CTReadError contract shared by every reader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import lungmonai.io as lio
from lungmonai.io import CTReadError, read_ct


def write_small(path: Path) -> np.ndarray:
    hu = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 100
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(path))
    return hu


def test_public_names() -> None:
    assert {"CTReadError", "CTVolume", "Geometry", "find_series", "read_ct"} <= set(lio.__all__)
    assert issubclass(CTReadError, ValueError)


@pytest.mark.parametrize("name", ["a.mhd", "a.mha", "a.nii", "a.nii.gz"])
def test_dispatch_on_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    hu = write_small(path)
    volume = read_ct(str(path))  # str accepted as well as Path
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.series_uid == "a"


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    hu = write_small(tmp_path / "a.mhd")
    (tmp_path / "a.mhd").rename(tmp_path / "a.MHD")
    np.testing.assert_array_equal(read_ct(tmp_path / "a.MHD").hu, hu)


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.mhd"
    with pytest.raises(CTReadError, match=r"file not found") as caught:
        read_ct(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize("name", ["scan.png", "scan.raw", "scan"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(CTReadError, match=r"unknown extension") as caught:
        read_ct(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_error_survives_pickling(tmp_path: Path) -> None:
    # Readers run in dask / DataLoader workers; the error has to cross the process boundary.
    error = CTReadError(tmp_path / "x.mhd", "file not found")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, CTReadError)
    assert str(copy) == str(error) and copy.path == error.path and copy.problem == "file not found"
