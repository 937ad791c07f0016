"""The malignancy operating point: the P(malignant) threshold chosen on the validation series.

A report calls a finding malignant at P(malignant) >= ``malignancy_threshold``, and the book's
confusion table counts its Predicted-malignant column there. A fixed 0.5 sits wherever the
training prevalence and the size fusion's fit happen to put it: with the weights of pipeline
0.7.0 it called 20 of the 25 malignant val nodules found malignant, and 42 of the 69 malignant
held-out nodules. So the threshold is chosen as the nodule threshold is, on the validation series
for a stated target (``operating_point.malignant_recall`` in ``bundles/recipe.json``): the
highest threshold at which at least that share of the malignant nodules the pipeline finds there
is called malignant. A missed cancer costs more than a benign nodule sent for follow-up, so the
target is a recall; the share of benign nodules called malignant at it is reported beside it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from lungmonai.malignancy.size_fusion import apply_fusion, found_by_detections


class NoMalignantNodules(ValueError):
    """No malignant nodule among those found: there is no recall to choose a threshold for (a
    small validation series can have none; every other refusal is an error in the inputs)."""


def threshold_for_recall(p_malignant: np.ndarray, malignant: np.ndarray, recall: float) -> dict[str, Any]:
    """The highest threshold at which at least ``recall`` of the ``malignant`` nodules have
    ``p_malignant`` at or above it, with the recall reached and the share of benign nodules
    called malignant there."""
    p = np.asarray(p_malignant, dtype=np.float64).ravel()
    y = np.asarray(malignant).astype(bool).ravel()
    if p.size != y.size:
        raise ValueError(f"p_malignant and malignant differ in length: {p.size} and {y.size}")
    if not 0.0 < recall <= 1.0:  # also refuses NaN
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    if not np.isfinite(p).all():
        raise ValueError("p_malignant holds NaN: rate every nodule first")
    positives = int(y.sum())
    if positives == 0:
        raise NoMalignantNodules(f"no malignant nodule among the {y.size} found: a recall cannot be measured")
    # The k-th most suspicious malignant nodule, k the fewest that reach the target (the small
    # tolerance keeps 0.56 * 25, 14.000000000000002 in floating point, from rounding up to 15).
    k = max(math.ceil(recall * positives - 1e-9), 1)
    threshold = float(np.sort(p[y])[::-1][k - 1])
    called = p >= threshold
    benign = ~y
    return {"threshold": threshold, "recall": float(called[y].mean()), "recall_target": float(recall),
            "benign_called_malignant": float(called[benign].mean()) if benign.any() else None,
            "malignant": positives, "nodules": int(y.size)}


def threshold_from_detections(dataset_dir: str | os.PathLike[str], detections_csv: str | os.PathLike[str],
                              nodule_threshold: float, fusion: dict[str, Any] | None, recall: float) -> dict[str, Any]:
    """:func:`threshold_for_recall` on the nodules an evaluation's findings hit at
    ``nodule_threshold``, with P(malignant) as the pipeline reports it: the image model's
    probability through ``fusion`` (:func:`lungmonai.malignancy.size_fusion.load_fusion`; None:
    the image model's alone). Found nodules without a P(malignant) are left out and counted in
    ``unscored``."""
    found = found_by_detections(dataset_dir, detections_csv, nodule_threshold)
    scored = found[found["p_malignant"].notna()]
    p = apply_fusion(fusion, scored["p_malignant"].to_numpy(np.float64), scored["measured_diameter_mm"].to_numpy(np.float64))
    point = threshold_for_recall(p, scored["mal_bool"].to_numpy(bool), recall)
    return {**point, "nodule_threshold": float(nodule_threshold), "series": found.attrs["series"],
            "unscored": int(len(found) - len(scored)), "size_fusion": bool(fusion and fusion.get("use"))}
