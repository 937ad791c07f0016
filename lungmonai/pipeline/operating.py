"""The pipeline's operating point: the P(nodule) threshold chosen on the validation series.

A report lists the findings at or above ``nodule_threshold``. It is chosen for a stated number
of false positives per scan (LUNA16's FROC axis), so that a reader sees about that many false
findings per CT, rather than for a recall target, which at the demo's models listed about 170
findings per CT. It lives in the bundles' contract, where ``lungmonai analyze``, the bundles'
inference configs and the evaluation all read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_text
from lungmonai.metrics.froc import compute_froc
from lungmonai.tables.candidates import ANNOTATION_COLUMNS, ANNOTATION_FILE, read_luna_csv
from lungmonai.tables.splits import load_split


def threshold_for_fp_rate(fps: np.ndarray, sensitivity: np.ndarray, thresholds: np.ndarray,
                          fp_per_scan: float) -> dict[str, float]:
    """The lowest threshold whose false positives per scan stay at or below ``fp_per_scan``.

    ``fps``, ``sensitivity`` and ``thresholds`` are a FROC curve (non-decreasing FPs as the
    threshold falls, the first point at threshold +inf). Lower thresholds find more nodules,
    so the lowest one within the FP budget is the most sensitive allowed.
    """
    if fp_per_scan < 0:
        raise ValueError(f"fp_per_scan must be >= 0, got {fp_per_scan}")
    within = np.flatnonzero(np.asarray(fps) <= fp_per_scan)
    k = int(within[-1])  # the curve starts at 0 FPs, so there is always one
    threshold = float(thresholds[k])
    if not np.isfinite(threshold):  # even the top-scored mark is a false positive too many
        threshold = float(np.nextafter(np.float64(thresholds[1]), np.inf)) if len(thresholds) > 1 else 1.0
    return {"threshold": threshold, "fp_per_scan": float(fps[k]), "sensitivity": float(sensitivity[k]),
            "fp_per_scan_target": float(fp_per_scan)}


def operating_threshold(detections_csv: str | Path, dataset_dir: str | Path, part: str,
                        fp_per_scan: float) -> dict[str, float]:
    """The operating point of an evaluation's ``detections.csv`` on the ``part`` series."""
    dataset = Path(dataset_dir)
    detections = pd.read_csv(detections_csv, dtype={"seriesuid": str})
    truth = read_luna_csv(dataset / ANNOTATION_FILE, ANNOTATION_COLUMNS)
    series = load_split(dataset / "prepared/split.json").series_in(part)
    froc = compute_froc(detections[["seriesuid", "coordX", "coordY", "coordZ", "probability"]], truth, series)
    return threshold_for_fp_rate(froc["curve_fps"], froc["curve_sensitivity"], froc["curve_thresholds"], fp_per_scan)


THRESHOLDS = ("nodule_threshold", "malignancy_threshold")
"""The pipeline settings the validation chooses (this module, :mod:`lungmonai.malignancy.operating`)."""


def write_threshold(bundles_dir: str | Path, name: str, threshold: float) -> Path:
    """Set the contract's ``pipeline.<name>``, one of :data:`THRESHOLDS` (atomically; every other
    byte kept)."""
    if name not in THRESHOLDS:
        raise ValueError(f"{name!r} is not a chosen threshold; those are {', '.join(THRESHOLDS)}")
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {threshold}")
    path = Path(bundles_dir) / "contract.json"
    contract: dict[str, Any] = json.loads(path.read_text())
    contract["pipeline"][name] = float(threshold)
    return atomic_write_text(path, json.dumps(contract, indent=4) + "\n")
