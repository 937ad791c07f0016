"""Per-epoch binary figures: ROC AUC, ROC curve, per-class accuracy/loss, F1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc

from lungmonai.metrics.classification import binary_classification_metrics, operating_threshold, roc_auc, roc_curve


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_monai_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 60
    prob = rng.integers(0, 6, size=n) / 5.0  # few distinct values: many ties
    label = rng.random(n) < 0.3
    label[:2] = [True, False]
    expected = compute_roc_auc(torch.as_tensor(prob), torch.as_tensor(label.astype(np.int64)))
    assert roc_auc(prob, label) == pytest.approx(float(expected), abs=1e-9)


def test_auc_extremes_and_absent_class():
    label = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), label) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), label) == 0.0
    assert roc_auc(np.full(4, 0.5), label) == 0.5
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([0, 0])))


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_endpoints_monotone_and_area(seed):
    rng = np.random.default_rng(seed)
    prob = np.round(rng.random(50), 1)  # ties
    label = rng.random(50) < 0.4
    fpr, tpr, thresholds = roc_curve(prob, label)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert fpr[-1] == pytest.approx(1.0) and tpr[-1] == pytest.approx(1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    assert len(fpr) == len(np.unique(prob)) + 1  # one point per distinct threshold
    # each point is (FPR, TPR) of predicting positive at score >= threshold
    for f, t, th in zip(fpr[1:], tpr[1:], thresholds[1:]):
        pred = prob >= th
        assert t == pytest.approx((pred & label).sum() / label.sum())
        assert f == pytest.approx((pred & ~label).sum() / (~label).sum())
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count half
    assert area == pytest.approx(roc_auc(prob, label))


def test_crafted_confusion_f1_precision_recall():
    # 4 positives, 6 negatives; at 0.5: tp=3, fn=1, fp=2, tn=4
    prob = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.55, 0.4, 0.3, 0.1, 0.0])
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    loss = np.arange(10, dtype=float)
    m = binary_classification_metrics(prob, label, loss=loss)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 4)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert m["correct_all"] == pytest.approx(70.0)
    assert m["correct_pos"] == pytest.approx(75.0)
    assert m["correct_neg"] == pytest.approx(100 * 4 / 6)
    assert m["loss_all"] == pytest.approx(4.5)
    assert m["loss_pos"] == pytest.approx(np.mean([0, 1, 2, 3]))
    assert m["loss_neg"] == pytest.approx(np.mean([4, 5, 6, 7, 8, 9]))
    assert m["auc"] == pytest.approx(roc_auc(prob, label))
    # threshold is inclusive and configurable
    high = binary_classification_metrics(prob, label, threshold=0.8)
    assert (high["tp"], high["fp"]) == (2, 0) and high["precision"] == 1.0
    assert "loss_all" not in high


def test_absent_class_gives_nan_not_errors():
    only_neg = binary_classification_metrics(np.array([0.2, 0.7]), np.array([0, 0]), loss=np.array([1.0, 3.0]))
    assert math.isnan(only_neg["auc"]) and math.isnan(only_neg["correct_pos"]) and math.isnan(only_neg["loss_pos"])
    assert only_neg["correct_neg"] == 50.0 and only_neg["loss_neg"] == 2.0
    assert only_neg["recall"] == 0.0 and only_neg["precision"] == 0.0 and only_neg["f1"] == 0.0
    only_pos = binary_classification_metrics(np.array([0.2, 0.7]), np.array([1, 1]), loss=np.array([1.0, 3.0]))
    assert math.isnan(only_pos["correct_neg"]) and math.isnan(only_pos["loss_neg"])
    assert only_pos["recall"] == 0.5 and only_pos["precision"] == 1.0
    empty = binary_classification_metrics(np.zeros(0), np.zeros(0), loss=np.zeros(0))
    assert math.isnan(empty["loss_all"]) and empty["correct_all"] == 0.0


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="differ in length"):
        binary_classification_metrics(np.zeros(3), np.zeros(2))


def test_operating_threshold_is_the_highest_meeting_the_recall():
    prob = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    label = np.array([1, 0, 1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)  # positives at 0.95, 0.8, 0.6, 0.3
    assert operating_threshold(prob, label, 0.5) == 0.8
    assert operating_threshold(prob, label, 0.75) == 0.6
    assert operating_threshold(prob, label, 0.76) == 0.3
    assert operating_threshold(prob, label, 1.0) == 0.3
    for recall in (0.5, 0.75, 0.9, 1.0):
        t = operating_threshold(prob, label, recall)
        assert binary_classification_metrics(prob, label, threshold=t)["recall"] >= recall
        # Any higher threshold loses recall below the target.
        higher = prob[prob > t]
        if len(higher):
            assert binary_classification_metrics(prob, label, threshold=higher.min())["recall"] < recall


def test_operating_threshold_refuses_nonsense():
    with pytest.raises(ValueError, match="min_recall"):
        operating_threshold(np.array([0.5]), np.array([True]), 0.0)
    with pytest.raises(ValueError, match="positives"):
        operating_threshold(np.array([0.5]), np.array([False]), 0.9)
