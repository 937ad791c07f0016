"""find_inputs: which files and directories under a path are the CTs to analyse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungmonai.pipeline.run import find_inputs

from tests.helpers import touch, write_dicom_series, write_luna_dataset



def test_a_luna16_folder_gives_its_series_not_the_masks_beside_them(tmp_path: Path) -> None:
    dataset = write_luna_dataset(tmp_path / "luna", n_series=2, include_missing_series=False)
    touch(dataset.root / "masks" / f"{dataset.series_uids[0]}.mhd")  # a label map named like its CT
    assert find_inputs(dataset.root) == sorted(dataset.series.values())


def test_hidden_folders_and_the_pipelines_own_masks_are_not_inputs(tmp_path: Path) -> None:
    ct = touch(tmp_path / "cts" / "scan.nii.gz")
    touch(tmp_path / "cts" / ".venv" / "lib" / "example.nii.gz")
    touch(tmp_path / "cts" / "out" / "scan_mask.nii.gz")  # written by an earlier --mask run
    assert find_inputs(tmp_path / "cts") == [ct]


def test_dicom_files_named_by_their_uids_are_found(tmp_path: Path) -> None:
    series = tmp_path / "cts" / "series1"
    paths = write_dicom_series(series, np.zeros((3, 8, 8), np.int16), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
                               direction=np.eye(3))
    for k, path in enumerate(paths):
        path.rename(series / f"1.2.826.0.1.3680043.2.1125.99.{k + 1}")  # a suffix to Python, a UID to DICOM
    touch(series.parent / "notes.txt", "not a CT")
    assert find_inputs(tmp_path / "cts") == [series]


def test_an_empty_path_is_refused_not_read_as_the_working_directory() -> None:
    with pytest.raises(FileNotFoundError, match="no input given"):
        find_inputs("")
