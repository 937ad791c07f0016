"""Bundle data lists: candidate-table rows of one split part as MONAI data dicts."""

from __future__ import annotations

import numpy as np
import pytest

from lungmonai.classification.data import candidate_items, labels
from lungmonai.tables import load_candidate_table, load_split
from lungmonai.tables.prepare import prepare_dataset
from tests.helpers import write_luna_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    data = write_luna_dataset(root, include_missing_series=False)
    prepare_dataset(root, workers=1, cache=False)
    return data, root / "prepared"


def test_items_cover_exactly_the_parts_series(prepared):
    data, out = prepared
    split = load_split(out / "split.json")
    table = load_candidate_table(out / "candidates.csv")
    for part in ("train", "val", "test"):
        items = candidate_items(out, part)
        wanted = set(split.series_in(part))
        assert {item["series_uid"] for item in items} == wanted
        assert len(items) == int(table["series_uid"].isin(wanted).sum())
    both = candidate_items(out, ["train", "val"])
    assert len(both) == len(candidate_items(out, "train")) + len(candidate_items(out, "val"))
    everything = candidate_items(out, ["train", "val", "test"])
    assert len(everything) == len(table) == len(data.nodules) + len(data.negatives)


def test_item_fields_match_the_table(prepared):
    data, out = prepared
    table = load_candidate_table(out / "candidates.csv").set_index(["series_uid", "series_row"])
    items = candidate_items(out, ["train", "val", "test"])
    for item in items:
        row = table.loc[(item["series_uid"], item["series_row"])]
        assert item["label"] == item["is_nodule"] == int(row["is_nodule"])
        assert item["is_malignant"] == int(row["is_malignant"])
        assert item["center_xyz"] == pytest.approx([row["center_x"], row["center_y"], row["center_z"]])
        assert isinstance(item["series_row"], int) and isinstance(item["label"], int)
        assert isinstance(item["series_uid"], str)
    positives = sorted(tuple(np.round(i["center_xyz"], 3)) for i in items if i["label"])
    assert positives == sorted(tuple(np.round(n.center_xyz, 3)) for n in data.nodules)


def test_malignancy_items_are_nodules_only(prepared):
    data, out = prepared
    items = candidate_items(out, ["train", "val", "test"], nodules_only=True, label_column="is_malignant")
    assert len(items) == len(data.nodules)
    assert all(item["is_nodule"] == 1 for item in items)
    assert sum(item["label"] for item in items) == sum(n.malignant for n in data.nodules)
    assert labels(items) == [bool(item["is_malignant"]) for item in items]
    custom = candidate_items(out, "val", label_key="target")
    assert "target" in custom[0] and "label" not in custom[0]
    assert labels(custom, key="target") == [bool(i["is_nodule"]) for i in custom]


def test_unknown_part_is_refused(prepared):
    _, out = prepared
    with pytest.raises(ValueError, match="unknown split set"):
        candidate_items(out, "training")


def test_missing_prepared_dir_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_luna.py"):
        candidate_items(tmp_path / "nowhere", "train")

