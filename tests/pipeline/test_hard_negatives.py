"""Mining the segmentation's false positives on the training series into the candidate table."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import ConfigParser

from lungmonai.pipeline import PipelineSettings
from lungmonai.pipeline.hard_negatives import far_from_nodules, mine_hard_negatives
from lungmonai.pipeline.models import REPO, load_segmentation
from lungmonai.tables.candidates import CandidateTableError, load_candidate_table
from lungmonai.tables.prepare import HARD_NEGATIVES_FILE, prepare_dataset
from lungmonai.tables.splits import load_split

pytestmark = pytest.mark.slow


def test_far_from_nodules_uses_each_radius_plus_margin() -> None:
    nodules = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    centres = np.array([[6.9, 0, 0], [7.1, 0, 0], [100.0, 12.9, 0], [100, 13.1, 0]])
    np.testing.assert_array_equal(far_from_nodules(centres, nodules, np.array([8.0, 20.0]), 3.0), [False, True, False, True])
    assert far_from_nodules(centres, np.zeros((0, 3)), np.zeros(0), 3.0).all()


@pytest.fixture()
def prepared_copy(tiny_prepared: Path, tmp_path: Path) -> Path:
    root = tmp_path / "luna"
    shutil.copytree(tiny_prepared, root)
    return root


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bundles") / "nodule_seg"
    shutil.copytree(REPO / "bundles/nodule_seg/configs", root / "configs")
    parser = ConfigParser()
    parser.read_config(str(root / "configs/inference.json"))
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models/model.pt")
    return load_segmentation(root.parent, "cpu")


def test_mined_negatives_come_from_train_series_away_from_nodules(prepared_copy: Path, segmentation) -> None:
    # threshold 0: every lung voxel is foreground, so each CT yields components to mine
    settings = PipelineSettings(seg_threshold=0.0, erosion_mm=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mined = mine_hard_negatives(prepared_copy, segmentation, settings, per_ct=5, margin_mm=1.0)
    written = pd.read_csv(prepared_copy / "prepared" / HARD_NEGATIVES_FILE, dtype={"seriesuid": str})
    assert list(written.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "class"] and len(written) == len(mined)
    train = set(load_split(prepared_copy / "prepared/split.json").series_in("train"))
    assert set(written["seriesuid"]) <= train and (written["class"] == 0).all()
    truth = pd.read_csv(prepared_copy / "annotations.csv", dtype={"seriesuid": str})
    for uid, rows in written.groupby("seriesuid"):
        t = truth[truth["seriesuid"] == uid]
        assert far_from_nodules(rows[["coordX", "coordY", "coordZ"]].to_numpy(), t[["coordX", "coordY", "coordZ"]].to_numpy(),
                                t["diameter_mm"].to_numpy(), 1.0).all()
    # the next prepare joins them to the table (and the cache), as negatives of those series
    before = load_candidate_table(prepared_copy / "prepared/candidates.csv")
    summary = prepare_dataset(prepared_copy, workers=1)
    after = load_candidate_table(prepared_copy / "prepared/candidates.csv")
    assert summary["table"]["extra_negatives"] == len(written) > 0
    assert len(after) == len(before) + len(written) and after["is_nodule"].sum() == before["is_nodule"].sum()
    assert summary["cache"]["built"] >= written["seriesuid"].nunique() and not summary["cache"]["failed"]


def test_prepare_refuses_hard_negatives_outside_train(prepared_copy: Path) -> None:
    split = load_split(prepared_copy / "prepared/split.json")
    val_uid = split.series_in("val")[0]
    path = prepared_copy / "prepared" / HARD_NEGATIVES_FILE
    pd.DataFrame({"seriesuid": [val_uid], "coordX": [0.0], "coordY": [0.0], "coordZ": [0.0], "class": [0]}).to_csv(path, index=False)
    table_before = (prepared_copy / "prepared/candidates.csv").read_bytes()
    with pytest.raises(CandidateTableError, match=r"hard_negatives\.csv.*train"):
        prepare_dataset(prepared_copy, workers=1, cache=False)
    assert (prepared_copy / "prepared/candidates.csv").read_bytes() == table_before  # nothing overwritten
    with pytest.raises(CandidateTableError, match="new split"):
        prepare_dataset(prepared_copy, workers=1, cache=False, new_split=True)
