"""Metrics: classification figures, and the diameter-only malignancy baseline."""

from lungmonai.metrics.baseline import bootstrap_auc_ci, diameter_auc, every_nth_series
from lungmonai.metrics.classification import binary_classification_metrics, roc_auc, roc_curve
from lungmonai.metrics.confusion import confusion_for_ct, confusion_table, format_confusion, sum_confusion
from lungmonai.metrics.froc import FROC_FPS, bootstrap_froc, compute_froc, froc_figure

__all__ = [
    "FROC_FPS",
    "bootstrap_froc",
    "compute_froc",
    "confusion_for_ct",
    "confusion_table",
    "format_confusion",
    "froc_figure",
    "sum_confusion",
    "binary_classification_metrics",
    "bootstrap_auc_ci",
    "diameter_auc",
    "every_nth_series",
    "roc_auc",
    "roc_curve",
]
