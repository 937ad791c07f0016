"""The operating point: the most sensitive threshold within a false-positive budget per scan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lungmonai.pipeline import pipeline_settings
from lungmonai.pipeline.operating import threshold_for_fp_rate, write_threshold

REPO = Path(__file__).resolve().parents[2]

# A FROC curve over 10 scans: thresholds fall, false positives per scan and sensitivity rise.
FPS = np.array([0.0, 0.0, 0.1, 0.5, 0.9, 1.0, 1.4, 3.0])
SENS = np.array([0.0, 0.3, 0.4, 0.6, 0.7, 0.72, 0.8, 0.9])
THRESHOLDS = np.array([np.inf, 0.99, 0.95, 0.8, 0.6, 0.5, 0.3, 0.1])


def test_the_lowest_threshold_within_the_budget_is_chosen() -> None:
    point = threshold_for_fp_rate(FPS, SENS, THRESHOLDS, 1.0)
    assert point == {"threshold": 0.5, "fp_per_scan": 1.0, "sensitivity": 0.72, "fp_per_scan_target": 1.0}
    assert threshold_for_fp_rate(FPS, SENS, THRESHOLDS, 0.7)["threshold"] == 0.8
    assert threshold_for_fp_rate(FPS, SENS, THRESHOLDS, 10.0)["threshold"] == 0.1


def test_a_budget_no_mark_meets_reports_nothing_rather_than_everything() -> None:
    fps = np.array([0.0, 0.5, 1.0])
    point = threshold_for_fp_rate(fps, np.array([0.0, 0.0, 0.5]), np.array([np.inf, 0.9, 0.2]), 0.1)
    assert point["threshold"] > 0.9 and point["sensitivity"] == 0.0
    with pytest.raises(ValueError, match="fp_per_scan"):
        threshold_for_fp_rate(fps, fps, fps, -1.0)


@pytest.mark.parametrize("name", ["nodule_threshold", "malignancy_threshold"])
def test_the_chosen_threshold_is_what_the_pipeline_reads(tmp_path: Path, name: str) -> None:
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", bundles, ignore=shutil.ignore_patterns("models", "runs", "eval"))
    before = json.loads((bundles / "contract.json").read_text())
    write_threshold(bundles, name, 0.8125)
    after = json.loads((bundles / "contract.json").read_text())
    assert getattr(pipeline_settings(bundles), name) == 0.8125
    after["pipeline"][name] = before["pipeline"][name]
    assert after == before, "writing the threshold changed another setting"


def test_only_a_chosen_threshold_and_a_probability_are_written(tmp_path: Path) -> None:
    (tmp_path / "contract.json").write_text('{"pipeline": {"nodule_threshold": 0.5}}')
    with pytest.raises(ValueError, match="seg_threshold.*not a chosen threshold"):
        write_threshold(tmp_path, "seg_threshold", 0.2)
    with pytest.raises(ValueError, match="probability"):
        write_threshold(tmp_path, "malignancy_threshold", 1.5)
    assert json.loads((tmp_path / "contract.json").read_text()) == {"pipeline": {"nodule_threshold": 0.5}}
