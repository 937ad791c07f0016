"""Metrics: classification figures, and the diameter-only malignancy baseline."""

from lungmonai.metrics.baseline import bootstrap_auc_ci, diameter_auc, every_nth_series
from lungmonai.metrics.classification import binary_classification_metrics, roc_auc, roc_curve

__all__ = [
    "binary_classification_metrics",
    "bootstrap_auc_ci",
    "diameter_auc",
    "every_nth_series",
    "roc_auc",
    "roc_curve",
]
