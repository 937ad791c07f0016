"""The prepared directory's checks: which command creates it when missing, and no series both trained on and evaluated on."""

from __future__ import annotations

import pytest

from lungmonai.data.prepared import assert_no_leak, require_prepared
from lungmonai.tables.prepare import prepare_dataset
from tests.helpers import write_luna_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    write_luna_dataset(root, include_missing_series=False)
    prepare_dataset(root, workers=1, cache=False)
    return root / "prepared"


def test_missing_prepared_dir_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_luna.py") as info:
        require_prepared(tmp_path)
    assert "candidates.csv" in str(info.value) and "split.json" in str(info.value)


def test_leak_check(prepared):
    from lungmonai.tables.splits import SplitLeakError

    assert_no_leak(prepared, ["train"], ["val", "test"])  # the normal case passes
    with pytest.raises(SplitLeakError):
        assert_no_leak(prepared, ["train"], ["train"])
    with pytest.raises(SplitLeakError):
        assert_no_leak(prepared, ["train", "test"], ["val"])
