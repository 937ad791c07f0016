"""Training targets for malignancy: hard ``mal_bool``, or soft labels from the radiologists' ratings.

``mal_bool`` ("at least two reads rate malignancy >= 4") throws away how sure the readers were:
a [5, 5, 5, 5] nodule and a [4, 4, 1, 2] one get the same label, a [3, 3, 4] nodule the same as
a [1, 1, 1]. Soft targets keep that information, and train the network to be as uncertain as
the radiologists were on the nodules they disagreed about:

- ``hard``:  ``is_malignant`` (0 or 1), the book's label;
- ``share``: the share of reads rating malignancy >= 4, i.e. the mean of one-hot
  "benign/malignant" votes;
- ``rating``: the mean rating mapped from 1..5 to 0..1, which also separates "probably benign"
  (2) from "highly unlikely" (1).

Validation always scores against the hard label, so AUCs stay comparable between modes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.lidc.join import read_annotations_with_malignancy
from lungmonai.lidc.malignancy import MALIGNANT_RATING

logger = logging.getLogger(__name__)

MODES = ("hard", "share", "rating")


def soft_target(ratings: Sequence[int], mode: str) -> float:
    """P(malignant) target from one nodule's ratings (1..5) under ``mode`` ("share" or "rating")."""
    values = np.asarray([r for r in ratings if r is not None], dtype=np.float64)
    if values.size == 0:
        raise ValueError("a nodule without malignancy ratings has no soft label")
    if mode == "share":
        return float((values >= MALIGNANT_RATING).mean())
    if mode == "rating":
        return float(np.clip((values.mean() - 1.0) / 4.0, 0.0, 1.0))
    raise ValueError(f"unknown soft label mode {mode!r}: choose one of {MODES}")


def nodule_ratings(items: Sequence[dict[str, Any]], malignancy_csv: str | Path) -> list[list[int] | None]:
    """Each item's ratings (``mal_details``) from the nearest row of its series in the malignancy
    table within its radius (>= 1 mm), the rule the candidate table uses for ``is_malignant``;
    None where nothing matches."""
    table = read_annotations_with_malignancy(malignancy_csv)
    by_series = {uid: rows for uid, rows in table.groupby("seriesuid", sort=False)}
    out: list[list[int] | None] = []
    for item in items:
        rows = by_series.get(str(item["series_uid"]))
        if rows is None:
            out.append(None)
            continue
        xyz = rows[["coordX", "coordY", "coordZ"]].to_numpy(dtype=np.float64)
        dist = np.linalg.norm(xyz - np.asarray(item["center_xyz"], dtype=np.float64), axis=1)
        nearest = int(np.argmin(dist))
        within = dist[nearest] <= max(float(item["diameter_mm"]) / 2.0, 1.0)
        out.append(list(rows["mal_details"].iloc[nearest]) if within else None)
    return out


def attach_targets(
    items: Sequence[dict[str, Any]],
    mode: str = "hard",
    malignancy_csv: str | Path | None = None,
    label_key: str = "label",
) -> list[dict[str, Any]]:
    """Copies of ``items`` whose ``label_key`` is the float training target under ``mode``.

    ``is_malignant`` stays the hard label (for the balanced sampler and the metrics). A nodule
    whose ratings cannot be found keeps its hard label as target, with a warning.
    """
    if mode not in MODES:
        raise ValueError(f"unknown soft label mode {mode!r}: choose one of {MODES}")
    out = [dict(item) for item in items]
    if mode == "hard":
        for item in out:
            item[label_key] = float(item["is_malignant"])
        return out
    if malignancy_csv is None:
        raise ValueError(f"soft labels ({mode!r}) need the malignancy table (annotations_with_malignancy.csv)")
    ratings = nodule_ratings(out, malignancy_csv)
    missing = 0
    for item, reads in zip(out, ratings):
        item["ratings"] = str(reads or [])  # text: lists of different lengths do not collate
        if reads:
            item[label_key] = soft_target(reads, mode)
        else:
            missing += 1
            item[label_key] = float(item["is_malignant"])
    if missing:
        logger.warning("%d of %d nodules have no ratings in %s: their hard label is used", missing, len(out), malignancy_csv)
    return out


def nodule_items(
    prepared_dir: str | Path,
    parts: str | Sequence[str],
    mode: str = "hard",
    malignancy_csv: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The nodules (``is_nodule`` rows) of the split ``parts``, labelled for malignancy."""
    from lungmonai.classification.data import candidate_items

    items = candidate_items(prepared_dir, parts, nodules_only=True, label_column="is_malignant")
    return attach_targets(items, mode, malignancy_csv)
