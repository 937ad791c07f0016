"""Diameter baseline in the evaluation report, the paired bootstrap, the probability ensemble,
and the baseline on the real LUNA16/LIDC table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lungmonai.classification import LunaModel
from lungmonai.handlers.report import ClassificationReportHandler
from lungmonai.malignancy.baseline import DiameterBaseline, paired_bootstrap_auc_difference
from lungmonai.malignancy.ensemble import ProbabilityEnsemble, ensemble_from_checkpoints
from lungmonai.metrics.classification import binary_classification_metrics

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/luna16_reference/annotations_with_malignancy.csv"


def _engine(prob: np.ndarray, label: np.ndarray) -> SimpleNamespace:
    metrics = {f"val_{k}": v for k, v in binary_classification_metrics(prob, label).items()}
    return SimpleNamespace(state=SimpleNamespace(classification_outputs={"val": (prob, label)}, metrics=metrics))


def test_report_holds_model_and_diameter_auc_with_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    label = np.arange(60) % 3 == 0
    diameter = np.where(label, 18.0, 9.0) + rng.normal(0, 5, 60)
    prob = np.clip(label * 0.6 + rng.uniform(0, 0.4, 60), 0, 1)  # separates perfectly
    items = [{"diameter_mm": d, "is_malignant": int(y)} for d, y in zip(diameter, label)]
    baseline = DiameterBaseline(items, n_boot=300)
    engine = _engine(prob, label)
    baseline.publish(engine)
    assert 0.5 < engine.state.metrics["val_diameter_auc"] < 1.0
    handler = ClassificationReportHandler(tmp_path, class_names=["benign", "malignant"], extra=baseline.extra,
                                          extra_curves=baseline.curves)
    handler(engine)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["model_auc"] == 1.0 and report["model_auc_ci95"] == [1.0, 1.0]
    assert report["diameter_auc"] == pytest.approx(engine.state.metrics["val_diameter_auc"])
    low, high = report["diameter_auc_ci95"]
    assert low < report["diameter_auc"] < high
    assert report["auc_minus_diameter"] == pytest.approx(1.0 - report["diameter_auc"])
    assert report["auc_minus_diameter_ci95"][0] > 0 and report["p_model_not_better_than_diameter"] == 0.0
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_baseline_refuses_outputs_in_another_order() -> None:
    baseline = DiameterBaseline([{"diameter_mm": 5.0, "is_malignant": 0}, {"diameter_mm": 9.0, "is_malignant": 1}])
    with pytest.raises(ValueError, match="unshuffled"):
        baseline.extra(_engine(np.array([0.2, 0.8]), np.array([True, False])))


def test_paired_difference_is_zero_for_identical_scores() -> None:
    rng = np.random.default_rng(1)
    score, label = rng.normal(size=40), np.arange(40) % 2 == 0
    point, low, high, p = paired_bootstrap_auc_difference(score, score, label, n_boot=100)
    assert point == low == high == 0.0 and p == 1.0


def test_ensemble_averages_probabilities(tmp_path: Path) -> None:
    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.pt")
        torch.save(LunaModel().state_dict(), paths[-1])
    ensemble = ensemble_from_checkpoints(LunaModel(), paths)
    assert isinstance(ensemble, ProbabilityEnsemble)
    x = torch.randn(3, 1, 32, 48, 48)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), 1) for m in ensemble.members]).mean(0)
        assert torch.allclose(torch.softmax(ensemble(x), 1), expected, atol=1e-6)
    single = ensemble_from_checkpoints(LunaModel(), paths[0])
    assert isinstance(single, LunaModel) and not single.training
    with pytest.raises(FileNotFoundError, match="nodule_malignancy"):
        ensemble_from_checkpoints(LunaModel(), [tmp_path / "absent.pt"])


@pytest.mark.skipif(not REFERENCE.is_file(), reason="real LUNA16 reference tables not present")
def test_diameter_baseline_on_real_lidc_reproduces_auc_0919() -> None:
    from lungmonai.lidc.join import read_annotations_with_malignancy

    table = read_annotations_with_malignancy(REFERENCE)
    items = [{"diameter_mm": d, "is_malignant": int(m)} for d, m in zip(table["diameter_mm"], table["mal_bool"])]
    label = table["mal_bool"].to_numpy(bool)
    baseline = DiameterBaseline(items, n_boot=200)
    engine = _engine(table["diameter_mm"].to_numpy(float) / 40.0, label)
    report = baseline.extra(engine)
    assert report["nodules"] == 1182 and report["malignant"] == 378
    assert round(report["diameter_auc"], 3) == 0.919
    low, high = report["diameter_auc_ci95"]
    assert low < 0.919 < high and high - low < 0.05
