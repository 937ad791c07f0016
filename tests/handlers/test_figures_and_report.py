"""TensorBoard figures, the augmentation grid and the on-disk evaluation report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from lungmonai.handlers import AugmentationGridHandler, ClassificationFiguresHandler, EpochClassificationMetrics
from lungmonai.handlers.report import ClassificationReportHandler

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tags(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"histograms": 0, "images": 0})
    acc.Reload()
    return acc


def _engine_with_outputs(prob, label, prefix="val", epoch=1):
    engine = Engine(lambda e, b: None)
    engine.state.epoch = epoch
    engine.state.classification_outputs = {prefix: (np.asarray(prob), np.asarray(label, dtype=bool))}
    return engine


def test_figures_handler_writes_histograms_and_roc(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "runs"))
    handler = ClassificationFiguresHandler(writer, prefix="val", step=lambda engine: 1234)
    engine = _engine_with_outputs([0.1, 0.4, 0.35, 0.8, 0.9], [0, 0, 1, 1, 1])
    handler(engine)
    writer.close()
    acc = _tags(tmp_path / "runs")
    tags = acc.Tags()
    assert {"val/p_nodule_neg", "val/p_nodule_pos"} <= set(tags["histograms"])
    assert "val/roc" in tags["images"]
    pos = acc.Histograms("val/p_nodule_pos")[0]
    assert pos.step == 1234 and pos.histogram_value.num == 3
    assert acc.Histograms("val/p_nodule_neg")[0].histogram_value.num == 2
    assert acc.Images("val/roc")[0].step == 1234


def test_figures_handler_one_class_and_other_prefix(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "runs"))
    ClassificationFiguresHandler(writer, prefix="val")(_engine_with_outputs([0.1, 0.2], [0, 0], epoch=3))
    ClassificationFiguresHandler(writer, prefix="train")(_engine_with_outputs([0.1, 0.2], [0, 1]))  # absent
    writer.close()
    tags = _tags(tmp_path / "runs").Tags()
    assert tags["histograms"] == ["val/p_nodule_neg"]  # no positives: no pos histogram, no ROC
    assert tags["images"] == []


def test_figures_handler_attached_after_metric(tmp_path):
    """Wired as in the bundle: the metric fills classification_outputs before the handler draws."""
    writer = SummaryWriter(log_dir=str(tmp_path / "runs"))
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.2], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 0, 1])
    engine = Engine(lambda e, b: {"pred": b[0], "label": b[1]})
    EpochClassificationMetrics(prefix="train").attach(engine, "train_f1")
    ClassificationFiguresHandler(writer, prefix="train").attach(engine)
    engine.run([(logits, labels)], max_epochs=2)
    writer.close()
    acc = _tags(tmp_path / "runs")
    assert [h.step for h in acc.Histograms("train/p_nodule_pos")] == [1, 2]
    assert "train/roc" in acc.Tags()["images"]


def test_augmentation_grid_once(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "runs"))
    images = torch.randn(5, 1, 4, 6, 6)
    engine = Engine(lambda e, b: None)
    AugmentationGridHandler(writer, count=3).attach(engine)
    calls = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: calls.append(1))
    engine.run([{"image": images, "label": torch.tensor([0, 1, 0, 1, 1])}] * 2, max_epochs=1)
    writer.close()
    png = tmp_path / "runs" / "augmented_samples.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    acc = _tags(tmp_path / "runs")
    assert len(acc.Images("train/augmented_samples")) == 1 and len(calls) == 2


def _report_engine(prob, label):
    engine = Engine(lambda e, b: {"pred": b[0], "label": b[1]})
    metric = EpochClassificationMetrics(prefix="test")
    metric.attach(engine, "test_f1")
    logits = torch.stack([torch.zeros(len(prob)), torch.logit(torch.as_tensor(prob, dtype=torch.float64)).float()], 1)
    return engine, (logits, torch.as_tensor(label))


def test_report_writes_json_and_pictures(tmp_path):
    prob = [0.1, 0.3, 0.7, 0.8, 0.6, 0.2]
    label = [0, 0, 0, 1, 1, 1]
    engine, batch = _report_engine(prob, label)
    out = tmp_path / "report"
    handler = ClassificationReportHandler(
        out, prefix="test", extra=lambda e: {"baseline_auc": np.float64(0.5), "note": "x"},
        extra_curves=lambda e: {"baseline": (np.array(prob)[::-1].copy(), np.array(label, dtype=bool))},
    )
    handler.attach(engine)
    engine.run([batch], max_epochs=1)
    report = json.loads((out / "metrics.json").read_text())
    assert report["part"] == "test" and report["count"] == 6 and report["positives"] == 3
    assert report["baseline_auc"] == 0.5 and report["note"] == "x"
    m = report["metrics"]
    for key in ("f1", "precision", "recall", "auc", "correct_all", "correct_neg", "correct_pos",
                "loss_all", "loss_neg", "loss_pos", "tp", "fp", "tn", "fn"):
        assert key in m, key
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    assert m["auc"] == pytest.approx(engine.state.metrics["test_auc"])
    assert not any(k.startswith("test_") for k in m)
    for name in ("confusion_matrix.png", "roc.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "roc.png"]


def test_report_with_one_class_writes_null_auc_and_no_roc(tmp_path):
    (tmp_path / "roc.png").write_bytes(PNG_MAGIC)  # an earlier evaluation's curve
    engine, batch = _report_engine([0.2, 0.7], [0, 0])
    ClassificationReportHandler(tmp_path, prefix="test", extra=lambda e: {"baseline_auc": np.float64("nan"),
                                                                          "per_seed": [np.float64("nan"), 0.5]}).attach(engine)
    engine.run([batch], max_epochs=1)
    assert math.isnan(engine.state.metrics["test_auc"])
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text  # strict JSON
    m = json.loads(text)["metrics"]
    assert m["auc"] is None and m["correct_pos"] is None and m["fp"] == 1
    assert json.loads(text)["baseline_auc"] is None and json.loads(text)["per_seed"] == [None, 0.5]  # NaN nested too
    assert (tmp_path / "confusion_matrix.png").is_file() and not (tmp_path / "roc.png").exists()


def test_report_gives_the_operating_point_for_a_recall(tmp_path):
    prob, label = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1], [1, 0, 1, 0, 1, 0]
    engine, batch = _report_engine(prob, label)
    ClassificationReportHandler(tmp_path, prefix="test", operating_recall=0.9).attach(engine)
    engine.run([batch], max_epochs=1)
    point = json.loads((tmp_path / "metrics.json").read_text())["operating_point"]
    # All three positives are needed for recall >= 0.9: the lowest one (0.2) sets the threshold.
    assert point["threshold"] == pytest.approx(0.2)
    assert point["recall"] == 1.0 and point["tp"] == 3 and point["fp"] == 2
    assert point["precision"] == pytest.approx(0.6)


def test_operating_threshold_ignores_a_nan_score():
    from lungmonai.metrics.classification import operating_threshold

    # a diverged model's NaN must not become the threshold (it would find nothing)
    assert operating_threshold(np.array([0.73, np.nan, 0.2]), np.array([1, 1, 0]), 0.5) == pytest.approx(0.73)
