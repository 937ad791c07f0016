"""The diameter-only baseline beside the model, on exactly the nodules the evaluator scored.

A malignancy CNN is only worth running if it beats "bigger is more suspicious" on the same
series (the book's fig. 14.11). These hooks take the evaluator's gathered outputs and the
items it was fed (same order: validation loaders do not shuffle) and give the report handler
both AUCs with bootstrap 95% intervals, the paired difference, and the baseline's ROC curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from lungmonai.metrics.baseline import bootstrap_auc_ci
from lungmonai.metrics.classification import roc_auc


def paired_bootstrap_auc_difference(
    score_a: np.ndarray, score_b: np.ndarray, labels: np.ndarray, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float, float]:
    """AUC(a) - AUC(b) on the same nodules, its percentile bootstrap interval, and the share of
    resamples where ``a`` does not beat ``b`` (a one-sided bootstrap p-value).

    Resampling nodules jointly for both scores keeps their correlation (both see the same hard
    and easy nodules), so the interval of the difference is much narrower than what two
    separate intervals suggest.
    """
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, size=y.size)
        if y[idx].all() or not y[idx].any():
            continue
        diffs.append(roc_auc(a[idx], y[idx]) - roc_auc(b[idx], y[idx]))
    point = roc_auc(a, y) - roc_auc(b, y)
    if not diffs:
        return point, float("nan"), float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    p_not_better = float(np.mean(np.asarray(diffs) <= 0.0))
    return float(point), float(low), float(high), p_not_better


class DiameterBaseline:
    """Diameter of the evaluated nodules as a competing malignancy score.

    ``extra`` and ``curves`` plug into ``ClassificationReportHandler(extra=..., extra_curves=...)``;
    attached to an evaluator it also publishes ``{prefix}_diameter_auc`` every epoch, so
    TensorBoard shows the line the model has to clear.
    """

    def __init__(
        self, items: Sequence[Mapping[str, Any]], prefix: str = "val", n_boot: int = 2000, seed: int = 0, name: str = "diameter"
    ) -> None:
        self.diameter = np.asarray([float(item["diameter_mm"]) for item in items], dtype=np.float64)
        self.item_labels = np.asarray([bool(item["is_malignant"]) for item in items], dtype=bool)
        self.prefix = prefix
        self.n_boot = int(n_boot)
        self.seed = int(seed)
        self.name = name

    def _outputs(self, engine: Engine) -> tuple[np.ndarray, np.ndarray]:
        prob, label = engine.state.classification_outputs[self.prefix]
        if len(prob) != len(self.diameter) or not np.array_equal(np.asarray(label, bool), self.item_labels):
            raise ValueError(
                f"the evaluator scored {len(prob)} nodules but the baseline holds {len(self.diameter)} in another order; "
                "the baseline needs the evaluator's items, unshuffled and on one process"
            )
        return np.asarray(prob, dtype=np.float64), np.asarray(label, dtype=bool)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.publish)

    def publish(self, engine: Engine) -> None:
        """Baseline AUC into ``engine.state.metrics`` (for StatsHandler / TensorBoard)."""
        engine.state.metrics[f"{self.prefix}_{self.name}_auc"] = roc_auc(self.diameter, self.item_labels)

    def extra(self, engine: Engine) -> dict[str, Any]:
        """Model and baseline AUCs with bootstrap 95% intervals, and their paired difference."""
        prob, label = self._outputs(engine)
        kw = {"n_boot": self.n_boot, "seed": self.seed}
        diff = paired_bootstrap_auc_difference(prob, self.diameter, label, **kw)
        return {
            "nodules": int(len(label)),
            "malignant": int(label.sum()),
            "model_auc": roc_auc(prob, label),
            "model_auc_ci95": list(bootstrap_auc_ci(prob, label, **kw)),
            f"{self.name}_auc": roc_auc(self.diameter, label),
            f"{self.name}_auc_ci95": list(bootstrap_auc_ci(self.diameter, label, **kw)),
            f"auc_minus_{self.name}": diff[0],
            f"auc_minus_{self.name}_ci95": list(diff[1:3]),
            f"p_model_not_better_than_{self.name}": diff[3],
            "bootstrap_resamples": self.n_boot,
        }

    def curves(self, engine: Engine) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The baseline's ROC input, drawn in the model's ROC figure."""
        _, label = self._outputs(engine)
        return {f"{self.name} alone": (self.diameter, label)}
