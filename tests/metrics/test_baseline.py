"""Diameter-only baseline on the real LUNA16 malignancy table, and the AUC itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.metrics.baseline import (bootstrap_auc_ci, diameter_auc, every_nth_series, found_nodules,
                                        model_against_diameter, roc_auc)

REFERENCE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "luna16_reference").resolve()


def test_rank_auc_known_values() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert roc_auc([1, 2, 3], [0, 0, 0]) != roc_auc([1, 2, 3], [0, 0, 0])  # NaN
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 300).astype(float)
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert roc_auc(scores, labels) == pytest.approx(brute)


def test_bootstrap_interval_brackets_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.4
    scores = labels + rng.normal(0, 1, 200)
    low, high = bootstrap_auc_ci(scores, labels, n_boot=300, seed=0)
    assert low < roc_auc(scores, labels) < high
    assert bootstrap_auc_ci(scores, labels, n_boot=300, seed=0) == (low, high)


@pytest.fixture(scope="module")
def reference_table():
    from lungmonai.lidc.join import read_annotations_with_malignancy

    path = REFERENCE / "annotations_with_malignancy.csv"
    if not path.is_file():
        pytest.skip(f"real LUNA16 reference tables not found at {REFERENCE} (the shared/ directory beside the repo)")
    return read_annotations_with_malignancy(path)


def test_diameter_auc_on_all_reference_nodules(reference_table) -> None:
    assert len(reference_table) == 1182
    assert int(reference_table["mal_bool"].sum()) == 378
    assert int((~reference_table["mal_bool"]).sum()) == 804
    assert round(diameter_auc(reference_table), 3) == 0.919


def test_book_validation_split(reference_table) -> None:
    val = every_nth_series(reference_table["seriesuid"], 10)
    assert len(val) == 60
    subset = reference_table[reference_table["seriesuid"].isin(val)]
    assert len(subset) == 124 and int(subset["mal_bool"].sum()) == 40
    assert round(diameter_auc(subset), 3) == 0.846
    low, high = bootstrap_auc_ci(subset["diameter_mm"], subset["mal_bool"], n_boot=500)
    assert low < 0.846 < high


def test_found_nodules_take_the_most_likely_reported_finding_within_the_radius() -> None:
    truth = pd.DataFrame({"seriesuid": ["a", "a", "b"], "coordX": [0.0, 50.0, 0.0], "coordY": 0.0, "coordZ": 0.0,
                          "diameter_mm": [10.0, 10.0, 8.0], "mal_bool": [True, False, False]})
    detections = pd.DataFrame({
        "seriesuid": ["a", "a", "a", "b"], "coordX": [1.0, 3.0, 56.0, 0.5], "coordY": 0.0, "coordZ": 0.0,
        "p_nodule": [0.6, 0.9, 0.95, 0.2], "p_malignant": [0.1, 0.8, 0.3, 0.5], "diameter_mm": [9.0, 11.0, 4.0, 7.0]})
    found = found_nodules(truth, detections, threshold=0.5)
    # Nodule 1: two hits, the 0.9 one speaks for it; nodule 2: its finding lies 6 mm away (radius 5);
    # nodule 3: its only finding is below the reporting threshold.
    assert found.to_dict("records") == [{"seriesuid": "a", "mal_bool": True, "p_malignant": 0.8, "measured_diameter_mm": 11.0}]


def test_model_against_diameter_pairs_the_resamples() -> None:
    rng = np.random.default_rng(0)
    label = np.r_[np.ones(30, bool), np.zeros(60, bool)]
    found = pd.DataFrame({"mal_bool": label, "p_malignant": np.where(label, 0.7, 0.3) + rng.normal(0, 0.05, 90),
                          "measured_diameter_mm": rng.normal(8, 2, 90) + 1.0 * label})
    result = model_against_diameter(found, n_boot=300)
    assert result["nodules"] == 90 and result["malignant"] == 30
    assert result["model_auc"] == pytest.approx(1.0) and result["diameter_auc"] < 0.8
    lo, hi = result["difference_ci"]
    assert 0 < lo <= result["difference"] <= hi
    assert model_against_diameter(found[~found["mal_bool"]])["model_auc"] is None
