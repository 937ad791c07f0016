"""The malignancy threshold: the highest that calls the stated share of the malignant nodules
found malignant, measured on what the pipeline reports (size fusion included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.malignancy.operating import threshold_for_recall, threshold_from_detections
from lungmonai.malignancy.size_fusion import apply_fusion
from tests.helpers import write_nodule_tables


def test_the_highest_threshold_reaching_the_recall_is_chosen() -> None:
    # Ten malignant nodules rated 0.95 .. 0.05, five benign at 0.6, 0.3, 0.2, 0.1, 0.01.
    malignant_p = np.linspace(0.95, 0.05, 10)
    p = np.concatenate([malignant_p, [0.6, 0.3, 0.2, 0.1, 0.01]])
    y = np.array([True] * 10 + [False] * 5)
    point = threshold_for_recall(p, y, 0.9)
    assert point["threshold"] == pytest.approx(0.15)  # the 9th most suspicious malignant nodule
    assert point["recall"] == pytest.approx(0.9) and point["recall_target"] == 0.9
    assert point["benign_called_malignant"] == pytest.approx(0.6)  # 0.6, 0.3 and 0.2
    assert point["malignant"] == 10 and point["nodules"] == 15
    # A lower target gives a higher threshold, and recall never falls below the target.
    assert threshold_for_recall(p, y, 0.5)["threshold"] == pytest.approx(0.55)
    # 14 of 25 malignant nodules reach 0.56 exactly, though 0.56 * 25 is 14.000000000000002 in floats.
    many = np.linspace(1.0, 0.04, 25)
    assert threshold_for_recall(many, np.ones(25, bool), 0.56)["threshold"] == pytest.approx(many[13])
    assert threshold_for_recall(p, y, 1.0)["threshold"] == pytest.approx(0.05)
    for target in np.linspace(0.05, 1.0, 20):
        assert threshold_for_recall(p, y, target)["recall"] >= target - 1e-12


def test_ties_count_as_called_and_bad_inputs_are_named() -> None:
    p = np.array([0.7, 0.7, 0.7, 0.2])
    point = threshold_for_recall(p, np.array([True, True, False, True]), 0.6)
    assert point["threshold"] == 0.7 and point["recall"] == pytest.approx(2 / 3)
    assert point["benign_called_malignant"] == 1.0
    with pytest.raises(ValueError, match="no malignant nodule"):
        threshold_for_recall(p, np.zeros(4, bool), 0.9)
    with pytest.raises(ValueError, match="recall"):
        threshold_for_recall(p, np.ones(4, bool), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        threshold_for_recall(np.array([0.5, np.nan]), np.array([True, False]), 0.9)
    with pytest.raises(ValueError, match="length"):
        threshold_for_recall(p, np.ones(3, bool), 0.9)


def test_chosen_on_the_nodules_found_with_the_probability_the_pipeline_reports(tmp_path: Path) -> None:
    # Twenty series with one nodule each, hit by a finding at its centre; the last four findings
    # fall below the nodule threshold, so their nodules are not found and do not count.
    rng = np.random.default_rng(3)
    malignant = np.arange(20) % 2 == 0
    diameters = np.where(malignant, 14.0, 6.0) + rng.uniform(-2, 2, 20)
    uids = [f"s{k}" for k in range(20)]
    write_nodule_tables(tmp_path, uids, diameters, malignant)
    p_image = np.clip(0.3 + 0.3 * malignant + rng.normal(0, 0.15, 20), 0.01, 0.99)
    p_nodule = np.where(np.arange(20) < 16, 0.9, 0.2)
    pd.DataFrame({"seriesuid": uids, "coordX": 0.5, "coordY": 0.0, "coordZ": 0.0, "probability": p_nodule,
                  "p_nodule": p_nodule, "p_malignant": 0.999, "p_malignant_image": p_image,
                  "diameter_mm": diameters}).to_csv(tmp_path / "detections.csv", index=False)
    fusion = {"use": True, "weights": {"intercept": -4.0, "logit_p_image": 1.0, "log_diameter_mm": 1.5}}

    point = threshold_from_detections(tmp_path, tmp_path / "detections.csv", 0.5, fusion, 0.75)
    found = slice(0, 16)
    reported = apply_fusion(fusion, p_image[found], diameters[found])  # not the file's 0.999
    assert point == {**threshold_for_recall(reported, malignant[found], 0.75), "nodule_threshold": 0.5,
                     "series": 20, "unscored": 0, "size_fusion": True}
    assert point["malignant"] == 8 and point["nodules"] == 16
    # Without a fusion the image model's own probability decides.
    plain = threshold_from_detections(tmp_path, tmp_path / "detections.csv", 0.5, None, 0.75)
    assert plain["threshold"] == threshold_for_recall(p_image[found], malignant[found], 0.75)["threshold"]
    assert plain["size_fusion"] is False
