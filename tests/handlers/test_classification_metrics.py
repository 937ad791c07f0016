"""EpochClassificationMetrics: every figure in engine.state.metrics under a prefix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from lungmonai.handlers import EpochClassificationMetrics
from lungmonai.metrics.classification import binary_classification_metrics

# logits whose softmax P(1) is > 0.5 exactly where logit1 > logit0
LOGITS = torch.tensor(
    [[2.0, 0.0], [0.0, 3.0], [1.0, 1.5], [0.5, -0.5], [0.0, 1.0], [3.0, -1.0], [-1.0, 0.0], [0.2, 0.1]]
)
LABELS = torch.tensor([0, 1, 1, 1, 0, 0, 1, 0])  # predicted: 0 1 1 0 1 0 1 0 -> tp=3, fn=1, fp=1, tn=3


def _run(batches, metric, name, decollate=False):
    def step(engine, batch):
        logits, labels = batch
        if decollate:
            return [{"pred": p, "label": y} for p, y in zip(logits, labels)]
        return {"pred": logits, "label": labels}

    engine = Engine(step)
    metric.attach(engine, name)
    engine.run(batches, max_epochs=1)
    return engine


def _batches():
    return [(LOGITS[:3], LABELS[:3]), (LOGITS[3:], LABELS[3:])]


@pytest.mark.parametrize("decollate", [False, True])
def test_figures_under_prefix_and_key_under_name(decollate):
    engine = _run(_batches(), EpochClassificationMetrics(prefix="val"), "val_f1", decollate=decollate)
    metrics = engine.state.metrics
    for figure in ("f1", "precision", "recall", "auc", "correct_all", "correct_neg", "correct_pos",
                   "loss_all", "loss_neg", "loss_pos", "tp", "fp", "tn", "fn"):
        assert f"val_{figure}" in metrics, figure
    assert (metrics["val_tp"], metrics["val_fn"], metrics["val_fp"], metrics["val_tn"]) == (3, 1, 1, 3)
    assert metrics["val_precision"] == pytest.approx(0.75)
    assert metrics["val_recall"] == pytest.approx(0.75)
    assert metrics["val_f1"] == pytest.approx(0.75)
    losses = F.cross_entropy(LOGITS, LABELS, reduction="none").numpy()
    assert metrics["val_loss_all"] == pytest.approx(losses.mean(), rel=1e-6)
    assert metrics["val_loss_pos"] == pytest.approx(losses[LABELS.numpy() == 1].mean(), rel=1e-6)
    prob = torch.softmax(LOGITS, 1)[:, 1].numpy()
    expected = binary_classification_metrics(prob, LABELS.numpy().astype(bool), loss=losses)
    for figure, value in expected.items():
        assert metrics[f"val_{figure}"] == pytest.approx(value, rel=1e-6)
    stored_prob, stored_label = engine.state.classification_outputs["val"]
    np.testing.assert_allclose(stored_prob, prob, rtol=1e-6)
    np.testing.assert_array_equal(stored_label, LABELS.numpy().astype(bool))
    assert stored_label.dtype == bool


def test_metric_name_holds_the_chosen_key_and_prefixes_coexist():
    metric_auc = EpochClassificationMetrics(prefix="train", key="auc")
    metric_f1 = EpochClassificationMetrics(prefix="other", threshold=0.9)

    def step(engine, batch):
        return {"pred": batch[0], "label": batch[1]}

    engine = Engine(step)
    metric_auc.attach(engine, "score")
    metric_f1.attach(engine, "f1_at_0.9")
    engine.run(_batches(), max_epochs=1)
    m = engine.state.metrics
    assert m["score"] == m["train_auc"]
    assert m["f1_at_0.9"] == m["other_f1"]
    assert m["other_tp"] == 1  # only P = softmax([0, 3])[1] ~ 0.95 passes 0.9
    assert set(engine.state.classification_outputs) == {"train", "other"}


def test_reset_between_epochs():
    metric = EpochClassificationMetrics(prefix="val")
    engine = _run(_batches() * 1, metric, "val_f1")
    engine.run(_batches(), max_epochs=2)  # continue one more epoch: figures over that epoch only
    assert engine.state.metrics["val_tp"] + engine.state.metrics["val_fn"] == 4
    assert len(engine.state.classification_outputs["val"][0]) == len(LABELS)


def test_single_class_epoch_is_nan_not_error():
    batches = [(LOGITS[:2], torch.zeros(2, dtype=torch.long))]
    engine = _run(batches, EpochClassificationMetrics(prefix="val", key="auc"), "val_auc")
    assert math.isnan(engine.state.metrics["val_auc"])
    assert math.isnan(engine.state.metrics["val_correct_pos"])
