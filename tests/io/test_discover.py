"""find_series: uid -> .mhd over a LUNA16 layout, deterministic and refusing duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungmonai.io import CTReadError, find_series
from lungmonai.io.discover import output_stem
from tests.helpers import touch



def test_finds_subsets_and_top_level_sorted(tmp_path: Path) -> None:
    expected = {
        "1.2.3": touch(tmp_path / "subset1" / "1.2.3.mhd"),
        "1.2.10": touch(tmp_path / "subset0" / "1.2.10.mhd"),
        "0.9": touch(tmp_path / "0.9.mhd"),
    }
    touch(tmp_path / "masks" / "1.2.3.mhd")  # label volumes share uids: never series
    touch(tmp_path / "subset0" / "._1.2.4.mhd")  # macOS resource fork
    touch(tmp_path / "subset0" / "1.2.5.raw")
    touch(tmp_path / "subset0" / "deeper" / "1.2.6.mhd")
    found = find_series(tmp_path)
    assert found == expected
    assert list(found) == sorted(expected)


def test_duplicate_uid_names_both_paths(tmp_path: Path) -> None:
    first = touch(tmp_path / "subset0" / "1.2.3.mhd")
    second = touch(tmp_path / "subset4" / "1.2.3.mhd")
    with pytest.raises(CTReadError) as caught:
        find_series(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: ")
    assert "1.2.3" in message and str(first) in message and str(second) in message


def test_empty_dataset_gives_empty_dict(tmp_path: Path) -> None:
    assert find_series(tmp_path) == {}


def test_missing_dataset_dir(tmp_path: Path) -> None:
    with pytest.raises(CTReadError, match="dataset directory not found"):
        find_series(tmp_path / "absent")


@pytest.mark.parametrize(("path", "stem"), [
    ("subset0/1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860.mhd",
     "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"),  # a uid keeps its dots
    ("scans/chest.CT.nii.gz", "chest.CT"), ("scans/chest.nii", "chest"), ("dicom/series.7", "series.7"),
])
def test_output_stem_drops_only_the_ct_suffix(path: str, stem: str) -> None:
    assert output_stem(path) == stem
