"""The diameter-only baseline for malignancy, with a bootstrap interval.

Nodule size alone separates LIDC's malignant from benign nodules well (ROC AUC ~0.92 on
LUNA16's nodules), so a malignancy model is only worth its cost if it clearly beats this
number on the same series.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lungmonai.metrics.classification import roc_auc


def bootstrap_auc_ci(
    scores: Iterable[float],
    labels: Iterable[bool],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`roc_auc` (resampling nodules).

    Resamples that lack a class are skipped. With ~120 validation nodules the interval is
    about +-0.07 wide, which is what a "better than diameter" claim must clear.
    """
    scores = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64).ravel()
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(bool).ravel()
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, scores.size, size=scores.size)
        auc = roc_auc(scores[idx], labels[idx])
        if not np.isnan(auc):
            aucs.append(auc)
    if not aucs:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(aucs), [tail, 1.0 - tail])
    return float(low), float(high)


def diameter_auc(table: pd.DataFrame, *, diameter_column: str = "diameter_mm", label_column: str = "mal_bool") -> float:
    """AUC of diameter alone as a malignancy score (bigger = more suspicious)."""
    return roc_auc(table[diameter_column].to_numpy(), table[label_column].to_numpy())


def every_nth_series(series_uids: Iterable[str], n: int = 10, offset: int = 0) -> list[str]:
    """The LUNA book's validation split: every ``n``-th series of the sorted unique uids.

    On the 600 series of ``annotations_with_malignancy.csv`` this gives 60 series holding
    124 nodules, 40 of them malignant.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return sorted(set(series_uids))[offset::n]


def found_nodules(truth: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The annotated nodules a reported finding hits (LUNA16's rule: within the nodule's radius),
    each with the P(malignant) and the measured diameter of its most likely finding.

    ``truth``: seriesuid, coordX/Y/Z, diameter_mm, mal_bool. ``detections``: seriesuid,
    coordX/Y/Z, p_nodule, p_malignant, diameter_mm (the pipeline's own measurement, which is
    what the diameter baseline must use end to end: the annotation's is not known to a user).
    """
    from lungmonai.metrics.froc import hit_matrix

    xyz = ["coordX", "coordY", "coordZ"]
    rows = []
    reported = detections[detections["p_nodule"] >= threshold]
    for uid, nodules in truth.groupby("seriesuid", sort=False):
        found = reported[reported["seriesuid"] == uid]
        if found.empty:
            continue
        hits = hit_matrix(nodules[xyz].to_numpy(), nodules["diameter_mm"].to_numpy(), found[xyz].to_numpy())
        for k, row in enumerate(nodules.itertuples(index=False)):
            if hits[k].any():
                best = found[hits[k]].sort_values("p_nodule", ascending=False, kind="stable").iloc[0]
                rows.append({"seriesuid": uid, "mal_bool": bool(row.mal_bool), "p_malignant": float(best["p_malignant"]),
                             "measured_diameter_mm": float(best["diameter_mm"])})
    return pd.DataFrame(rows, columns=["seriesuid", "mal_bool", "p_malignant", "measured_diameter_mm"])


def model_against_diameter(found: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
                           confidence: float = 0.95) -> dict[str, object]:
    """ROC AUC of P(malignant) and of the measured diameter on the same nodules, with percentile
    intervals and the paired difference's (each resample draws nodules once for both scores)."""
    label = found["mal_bool"].to_numpy(bool)
    model = found["p_malignant"].to_numpy(np.float64)
    size = found["measured_diameter_mm"].to_numpy(np.float64)
    out: dict[str, object] = {"nodules": int(len(found)), "malignant": int(label.sum())}
    if label.all() or not label.any():
        return {**out, "model_auc": None, "diameter_auc": None, "difference": None}
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(label), len(label))
        if label[pick].all() or not label[pick].any():
            continue
        pairs.append((roc_auc(model[pick], label[pick]), roc_auc(size[pick], label[pick])))
    boot = np.array(pairs)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, tail, axis=0), np.percentile(boot, 100 - tail, axis=0)
    diff = boot[:, 0] - boot[:, 1]
    m_auc, d_auc = roc_auc(model, label), roc_auc(size, label)
    return {**out, "model_auc": m_auc, "model_auc_ci": [float(lo[0]), float(hi[0])],
            "diameter_auc": d_auc, "diameter_auc_ci": [float(lo[1]), float(hi[1])],
            "difference": m_auc - d_auc,
            "difference_ci": [float(np.percentile(diff, tail)), float(np.percentile(diff, 100 - tail))]}
