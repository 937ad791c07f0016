"""Evaluation reports on disk: metrics JSON plus confusion-matrix and ROC pictures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from lungmonai.cache.atomic import atomic_write_json, jsonable
from lungmonai.metrics.classification import binary_classification_metrics, operating_threshold
from lungmonai.plots import confusion_figure, roc_figure, save_figure


class ClassificationReportHandler:
    """At the end of an evaluation, write ``metrics.json``, ``confusion_matrix.png`` and ``roc.png``.

    ``parts`` names the split parts evaluated (the metric prefix is always the evaluator's).
    ``extra`` is called with the engine and returns more entries for the JSON (e.g. a baseline's
    AUC); ``extra_curves`` likewise returns more ROC curves ``name -> (score, label)`` to draw in
    the same figure as the model's. With ``operating_recall``, the JSON also gives the highest
    threshold reaching that recall and precision/recall/F1 there (``operating_point``).
    """

    def __init__(
        self,
        output_dir: str | Path,
        prefix: str = "val",
        class_names: Sequence[str] = ("not nodule", "nodule"),
        model_name: str = "model",
        extra: Callable[[Engine], Mapping[str, Any]] | None = None,
        extra_curves: Callable[[Engine], Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
        parts: Sequence[str] | None = None,
        operating_recall: float | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.parts = list(parts) if parts else [prefix]
        self.prefix = prefix
        self.class_names = list(class_names)
        self.model_name = model_name
        self.extra = extra
        self.extra_curves = extra_curves
        self.operating_recall = operating_recall

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> dict[str, Any]:
        prob, label = engine.state.classification_outputs[self.prefix]
        start = f"{self.prefix}_"
        metrics = {k[len(start):]: v for k, v in engine.state.metrics.items() if k.startswith(start)}
        report: dict[str, Any] = {
            "part": "+".join(self.parts),
            "count": int(len(label)),
            "positives": int(label.sum()),
            "metrics": metrics,
        }
        if self.operating_recall is not None and label.any():
            threshold = operating_threshold(prob, label, self.operating_recall)
            at = binary_classification_metrics(prob, label, threshold=threshold)
            report["operating_point"] = {
                "min_recall": self.operating_recall,
                "threshold": threshold,
                **{k: at[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")},
            }
        if self.extra is not None:
            report.update(self.extra(engine))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "metrics.json", jsonable(report))
        matrix = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
        predicted = [f"predicted {name}" for name in self.class_names]
        save_figure(
            confusion_figure(matrix, self.class_names, predicted, f"{'+'.join(self.parts)}: {len(label)} samples"),
            self.output_dir / "confusion_matrix.png",
        )
        if label.any() and (~label).any():
            curves = {self.model_name: (prob, label)}
            if self.extra_curves is not None:
                curves.update(self.extra_curves(engine))
            save_figure(roc_figure(curves, title=f"{'+'.join(self.parts)} ROC"), self.output_dir / "roc.png")
        else:  # one class: no curve, and an earlier run's must not pass for this one's
            (self.output_dir / "roc.png").unlink(missing_ok=True)
        return report
