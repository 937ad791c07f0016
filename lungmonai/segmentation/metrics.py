"""Segmentation figures: voxel Dice/precision/recall over whole epochs, and per-nodule recall.

Voxel counts are summed over every slice before dividing: most slices hold no nodule, and a
per-slice mean Dice (MONAI's DiceMetric) is undefined or 1 on them, which hides the false
positives that matter. Per-nodule recall is what the next stage needs: a nodule counts as
found when the thresholded mask touches it anywhere within its radius. It is computed slice
by slice, so whole predicted volumes never have to be held in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def voxel_figures(tp: float, fp: float, fn: float, beta: float = 2.0) -> dict[str, float]:
    """Dice, precision, recall and F-beta (recall weighted ``beta`` times) from voxel counts.

    An empty denominator gives 1.0 for Dice/recall (nothing to find, nothing missed) and for
    precision (nothing marked, nothing wrong), so nodule-free data does not read as failure.
    """
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    dice = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    b2 = beta * beta
    f_beta = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return {
        "dice": float(dice),
        "precision": float(precision),
        "recall": float(recall),
        f"f{beta:g}": float(f_beta),
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
    }


class NoduleTouches:
    """Which nodules a predicted mask touches within their radius, fed one slice at a time.

    ``nodules`` are dicts with ``series_uid``, ``center_irc`` (continuous index, row, col),
    ``radius_mm`` and ``spacing_irc`` (as :func:`lungmonai.segmentation.data.nodule_list`
    makes them). ``hits[k]`` says whether nodule k has been touched so far.
    """

    def __init__(self, nodules: Sequence[dict[str, Any]], min_radius_voxels: float = 1.0) -> None:
        self.nodules = list(nodules)
        self.hits = np.zeros(len(self.nodules), dtype=bool)
        self._by_series: dict[str, list[int]] = defaultdict(list)
        for k, nodule in enumerate(self.nodules):
            self._by_series[str(nodule["series_uid"])].append(k)
        self.min_radius_voxels = float(min_radius_voxels)

    def reset(self) -> None:
        self.hits[:] = False

    def _radius_mm(self, nodule: dict[str, Any]) -> float:
        # a radius below one in-plane voxel could miss a mark on the centre voxel itself
        return max(float(nodule["radius_mm"]), self.min_radius_voxels * max(nodule["spacing_irc"][1:]))

    def update(self, series_uid: str, slice_index: int, mask: np.ndarray, row0: int = 0, col0: int = 0) -> None:
        """``mask`` (rows, cols) bool is the prediction of slice ``slice_index`` whose pixel
        (0, 0) is voxel (``row0``, ``col0``)."""
        for k in self._by_series.get(str(series_uid), ()):
            if self.hits[k]:
                continue
            nodule = self.nodules[k]
            ci, cr, cc = nodule["center_irc"]
            si, sr, sc = nodule["spacing_irc"]
            radius = self._radius_mm(nodule)
            dz = (slice_index - ci) * si
            if abs(dz) > radius:
                continue
            disk = np.sqrt(radius * radius - dz * dz)
            r_lo = max(int(np.floor(cr - disk / sr)) - row0, 0)
            r_hi = min(int(np.ceil(cr + disk / sr)) + 1 - row0, mask.shape[0])
            c_lo = max(int(np.floor(cc - disk / sc)) - col0, 0)
            c_hi = min(int(np.ceil(cc + disk / sc)) + 1 - col0, mask.shape[1])
            if r_hi <= r_lo or c_hi <= c_lo:
                continue
            patch = mask[r_lo:r_hi, c_lo:c_hi]
            if not patch.any():
                continue
            rr, cc_ = np.nonzero(patch)
            d2 = ((rr + r_lo + row0 - cr) * sr) ** 2 + ((cc_ + c_lo + col0 - cc) * sc) ** 2
            if np.any(d2 <= disk * disk):
                self.hits[k] = True

    def recall(self) -> float:
        """Share of nodules touched (1.0 when there are none)."""
        return float(self.hits.mean()) if len(self.hits) else 1.0

    def details(self) -> list[dict[str, Any]]:
        return [
            {
                "series_uid": n["series_uid"],
                "center_xyz": n.get("center_xyz"),
                "diameter_mm": n.get("diameter_mm"),
                "found": bool(hit),
            }
            for n, hit in zip(self.nodules, self.hits)
        ]


def nodule_recall(mask: np.ndarray, series_uid: str, nodules: Iterable[dict[str, Any]]) -> np.ndarray:
    """Per-nodule hit flags of a whole predicted mask (I, R, C) of one series."""
    touches = NoduleTouches([n for n in nodules if n["series_uid"] == series_uid])
    for k in range(mask.shape[0]):
        if mask[k].any():
            touches.update(series_uid, k, np.asarray(mask[k], dtype=bool))
    return touches.hits.copy()
