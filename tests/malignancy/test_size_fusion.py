"""The size fusion: chosen on validation when it helps, left out when it does not, and applied
by the pipeline exactly as written to the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.malignancy.size_fusion import (
    FUSION_FILE,
    apply_fusion,
    choose_fusion,
    fit_from_detections,
    load_fusion,
    stratified_folds,
    write_fusion,
)
from lungmonai.metrics.classification import roc_auc
from tests.helpers import write_nodule_tables


def _nodules(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Malignancy odds rising with log diameter and with an image cue the diameter does not carry;
    returns diameter, the cue, the true log-odds and the label."""
    rng = np.random.default_rng(seed)
    diameter = np.exp(rng.normal(np.log(10.0), 0.45, n))
    cue = rng.normal(0.0, 1.0, n)
    log_odds = -0.8 + 5.0 * (np.log(diameter) - np.log(10.0)) + 1.5 * cue
    malignant = rng.random(n) < 1.0 / (1.0 + np.exp(-log_odds))
    return diameter, cue, log_odds, malignant


def test_the_blend_beats_each_alone_when_size_and_image_both_carry_signal() -> None:
    diameter, cue, _, malignant = _nodules(0)
    p_image = 1.0 / (1.0 + np.exp(-1.5 * cue))  # the image model sees the cue, not the size
    fusion = choose_fusion(p_image, diameter, malignant, n_boot=200)
    cv = fusion["cv_auc"]
    assert cv["blend"]["auc"] > cv["image"]["auc"] and cv["blend"]["auc"] > cv["diameter"]["auc"]
    assert fusion["use"] is True
    assert fusion["blend_minus_image"]["ci95"][0] > 0  # clearly better than the image model
    assert fusion["weights"]["log_diameter_mm"] > 0 and fusion["weights"]["logit_p_image"] > 0
    assert fusion["nodules"] == 200 and fusion["malignant"] == int(malignant.sum())
    low, high = cv["blend"]["ci95"]
    assert low < cv["blend"]["auc"] < high
    json.dumps(fusion, allow_nan=False)  # what goes into the bundle is plain JSON


def test_no_gain_when_the_image_model_already_knows_the_size() -> None:
    diameter, _, log_odds, malignant = _nodules(1)
    p_image = 1.0 / (1.0 + np.exp(-log_odds))  # the true risk: nothing left for the diameter to add
    fusion = choose_fusion(p_image, diameter, malignant, n_boot=200)
    gain = fusion["blend_minus_image"]["difference"]
    assert fusion["use"] is False or abs(gain) < 0.01
    assert fusion["blend_minus_image"]["ci95"][1] < 0.02  # no clear gain either


def test_the_choice_is_the_same_every_run_and_every_fold_holds_malignant_nodules() -> None:
    diameter, cue, _, malignant = _nodules(2, n=60)
    p_image = 1.0 / (1.0 + np.exp(-cue))
    assert choose_fusion(p_image, diameter, malignant, n_boot=50) == choose_fusion(p_image, diameter, malignant, n_boot=50)
    folds = stratified_folds(malignant, 5, seed=0)
    for f in range(5):
        assert malignant[folds == f].sum() in (malignant.sum() // 5, malignant.sum() // 5 + 1)


def test_too_few_malignant_nodules_to_cross_validate_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 malignant"):
        choose_fusion(np.array([0.2, 0.3, 0.9]), np.array([5.0, 6.0, 20.0]), np.array([False, False, True]))


def test_without_a_chosen_fusion_p_malignant_is_the_image_models() -> None:
    p = np.array([0.1, 0.7, np.nan])
    d = np.array([4.0, 12.0, 8.0])
    np.testing.assert_array_equal(apply_fusion(None, p, d), p)
    unused = {"use": False, "weights": {"intercept": -5.0, "logit_p_image": 1.0, "log_diameter_mm": 3.0}}
    np.testing.assert_array_equal(apply_fusion(unused, p, d), p)


def test_a_nodule_without_a_diameter_keeps_the_image_probability() -> None:
    fusion = {"use": True, "weights": {"intercept": -5.0, "logit_p_image": 1.0, "log_diameter_mm": 2.0}}
    p = np.array([0.3, 0.3, 0.3, 1.0, np.nan])
    d = np.array([np.nan, 0.0, 20.0, 20.0, 20.0])
    out = apply_fusion(fusion, p, d)
    assert out[0] == 0.3 and out[1] == 0.3  # no usable size: the model's own answer
    assert out[2] != 0.3 and 0.0 < out[3] < 1.0  # a saturated probability still gives a finite blend
    assert np.isnan(out[4])  # a candidate the image model did not score stays unscored


def test_bigger_nodules_get_higher_p_malignant_at_the_same_image_probability() -> None:
    diameter, cue, _, malignant = _nodules(3)
    fusion = choose_fusion(1.0 / (1.0 + np.exp(-1.5 * cue)), diameter, malignant, n_boot=50)
    out = apply_fusion(fusion, np.full(3, 0.4), np.array([4.0, 10.0, 25.0]))
    assert out[0] < out[1] < out[2]


def test_the_weights_round_trip_through_the_bundle(tmp_path: Path) -> None:
    assert load_fusion(tmp_path) is None  # nothing chosen: the pipeline runs the image model alone
    diameter, cue, _, malignant = _nodules(4, n=80)
    p_image = 1.0 / (1.0 + np.exp(-cue))
    fusion = choose_fusion(p_image, diameter, malignant, n_boot=50)
    path = write_fusion(tmp_path, fusion)
    assert path == tmp_path / FUSION_FILE
    loaded = load_fusion(tmp_path)
    assert loaded == {**fusion, "model_sha256": None}  # no malignancy weights in this folder
    np.testing.assert_array_equal(apply_fusion(loaded, p_image, diameter), apply_fusion(fusion, p_image, diameter))


def test_a_fusion_fitted_to_other_malignancy_weights_is_not_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Retraining the malignancy model after the recipe chose a blend leaves a fusion fitted to the
    old model's logit: the pipeline then reports the new model's own probability, and says why."""
    model = tmp_path / "nodule_malignancy/models/model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"the weights the blend was fitted to")
    diameter, cue, _, malignant = _nodules(4, n=80)
    fusion = choose_fusion(1.0 / (1.0 + np.exp(-cue)), diameter, malignant, n_boot=50)
    write_fusion(tmp_path, fusion)
    assert json.loads((tmp_path / FUSION_FILE).read_text())["model_sha256"] is not None
    assert load_fusion(tmp_path)["weights"] == fusion["weights"]  # the same weights: applied
    model.write_bytes(b"retrained weights")
    with caplog.at_level("WARNING", logger="lungmonai.malignancy.size_fusion"):
        assert load_fusion(tmp_path) is None
    assert f"{tmp_path / FUSION_FILE}: fitted to other malignancy weights" in caplog.text
    # a file from before the check (no model_sha256) is applied as written
    legacy = {k: v for k, v in json.loads((tmp_path / FUSION_FILE).read_text()).items() if k != "model_sha256"}
    (tmp_path / FUSION_FILE).write_text(json.dumps(legacy))
    assert load_fusion(tmp_path) == legacy


def test_a_file_that_is_not_a_fusion_is_named(tmp_path: Path) -> None:
    (tmp_path / FUSION_FILE).parent.mkdir(parents=True)
    (tmp_path / FUSION_FILE).write_text('{"use": true, "weights": {"intercept": 1.0}}')
    with pytest.raises(ValueError, match="size_fusion.json.*logit_p_image"):
        load_fusion(tmp_path)


def test_fitted_on_the_nodules_the_pipeline_found_with_the_image_models_own_probability(tmp_path: Path) -> None:
    # Forty series, one annotated nodule each, every one hit by a finding at its centre; a false
    # positive per series and a finding below the threshold must not count.
    rng = np.random.default_rng(5)
    uids = [f"s{k}" for k in range(40)]
    malignant = np.arange(40) % 3 == 0
    diameter = np.where(malignant, 16.0, 7.0) + rng.normal(0, 3, 40).clip(-4, 4)
    write_nodule_tables(tmp_path, uids, diameter, malignant)
    p_image = np.clip(0.5 + 0.1 * rng.normal(0, 1, 40) + 0.1 * malignant, 0.01, 0.99)
    rows = []
    for u, d, p in zip(uids, diameter, p_image):
        rows.append({"seriesuid": u, "coordX": 0.5, "coordY": 0.0, "coordZ": 0.0, "probability": 0.9, "p_nodule": 0.9,
                     "p_malignant": 0.999, "p_malignant_image": p, "diameter_mm": d + 0.5})
        rows.append({"seriesuid": u, "coordX": 80.0, "coordY": 0.0, "coordZ": 0.0, "probability": 0.8, "p_nodule": 0.8,
                     "p_malignant": 0.5, "p_malignant_image": 0.5, "diameter_mm": 30.0})
        rows.append({"seriesuid": u, "coordX": 0.0, "coordY": 0.5, "coordZ": 0.0, "probability": 0.1, "p_nodule": 0.1,
                     "p_malignant": np.nan, "p_malignant_image": np.nan, "diameter_mm": 3.0})
    detections = tmp_path / "detections.csv"
    pd.DataFrame(rows).to_csv(detections, index=False)

    fusion = fit_from_detections(tmp_path, detections, nodule_threshold=0.5, n_boot=50)
    assert fusion["nodules"] == 40 and fusion["malignant"] == int(malignant.sum()) and fusion["unscored"] == 0
    # the image model's own probability was judged, not the earlier blend's 0.999 for every nodule
    assert fusion["cv_auc"]["image"]["auc"] == pytest.approx(roc_auc(p_image, malignant))
    # and the pipeline's measured diameter, not the annotation's
    assert fusion["cv_auc"]["diameter"]["auc"] == pytest.approx(roc_auc(diameter + 0.5, malignant))
    assert fusion["nodule_threshold"] == 0.5 and fusion["series"] == 40
