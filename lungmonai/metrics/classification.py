"""Binary classification figures the LUNA book reports per epoch, split by true class.

Accuracy on the whole set hides the failure that matters here (a classifier that calls every
candidate a non-nodule is 99.7% correct on LUNA16), so every figure is given for negatives and
positives separately, next to precision, recall, F1 and ROC AUC.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(prob: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); NaN when one class is absent."""
    prob = np.asarray(prob, dtype=np.float64).ravel()
    label = np.asarray(label).astype(bool).ravel()
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(prob)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(prob: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, from (0,0) to (1,1)."""
    prob = np.asarray(prob, dtype=np.float64).ravel()
    label = np.asarray(label).astype(bool).ravel()
    order = np.argsort(-prob, kind="mergesort")
    prob, label = prob[order], label[order]
    # One point per distinct threshold: the last index of each run of equal scores.
    last = np.concatenate([np.flatnonzero(np.diff(prob)), [len(prob) - 1]]) if len(prob) else np.array([], int)
    tps = np.cumsum(label)[last]
    fps = np.cumsum(~label)[last]
    tpr = np.concatenate([[0.0], tps / max(int(label.sum()), 1)])
    fpr = np.concatenate([[0.0], fps / max(int((~label).sum()), 1)])
    thresholds = np.concatenate([[np.inf], prob[last]])
    return fpr, tpr, thresholds


def binary_classification_metrics(
    prob: np.ndarray, label: np.ndarray, loss: np.ndarray | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Figures for P(positive) ``prob`` against boolean ``label``; ``loss`` is per sample.

    Keys: loss_all/neg/pos (when ``loss`` is given), correct_all/neg/pos (percent),
    precision, recall, f1, auc, and the counts tp, fp, tn, fn.
    """
    prob = np.asarray(prob, dtype=np.float64).ravel()
    label = np.asarray(label).astype(bool).ravel()
    if prob.shape != label.shape:
        raise ValueError(f"prob and label differ in length: {prob.shape} vs {label.shape}")
    predicted = prob >= threshold
    tp = int((predicted & label).sum())
    fp = int((predicted & ~label).sum())
    tn = int((~predicted & ~label).sum())
    fn = int((~predicted & label).sum())
    n_pos, n_neg = tp + fn, tn + fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out: dict[str, float] = {
        "correct_all": 100.0 * (tp + tn) / max(len(prob), 1),
        "correct_neg": 100.0 * tn / n_neg if n_neg else float("nan"),
        "correct_pos": 100.0 * tp / n_pos if n_pos else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": roc_auc(prob, label),
        "tp": float(tp),
        "fp": float(fp),
        "tn": float(tn),
        "fn": float(fn),
    }
    if loss is not None:
        loss = np.asarray(loss, dtype=np.float64).ravel()
        out["loss_all"] = float(loss.mean()) if len(loss) else float("nan")
        out["loss_neg"] = float(loss[~label].mean()) if n_neg else float("nan")
        out["loss_pos"] = float(loss[label].mean()) if n_pos else float("nan")
    return out


def operating_threshold(prob: np.ndarray, label: np.ndarray, min_recall: float) -> float:
    """The highest threshold at which ``prob >= threshold`` finds at least ``min_recall`` of the
    positives: the operating point of a detector whose misses cost more than its false alarms.

    Chosen on validation data, it must be checked on other data (the test part) before use;
    on the data that chose it, its recall is met by construction.
    """
    if not 0.0 < min_recall <= 1.0:
        raise ValueError(f"min_recall must be in (0, 1], got {min_recall}")
    prob = np.asarray(prob, dtype=np.float64).ravel()
    label = np.asarray(label).astype(bool).ravel()
    positives = np.sort(np.nan_to_num(prob[label], nan=-np.inf))[::-1]  # a NaN score finds nothing
    if not len(positives):
        raise ValueError("no positives: an operating point needs at least one")
    needed = int(np.ceil(min_recall * len(positives) - 1e-9))
    return float(positives[max(needed, 1) - 1])
