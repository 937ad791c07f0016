"""Per-nodule reach: would the pipeline's grouping hand this nodule to the classifier?

Touching a nodule somewhere (``NoduleTouches``) is not what the next stage needs. The pipeline
thresholds the probabilities, erodes, labels 3D components, keeps the ``max_components`` it
ranks first and classifies each at its HU-weighted centre, and LUNA16 counts a detection only
within a nodule's radius of its centre. A permissive segmentation touches every nodule, yet
floods the CT with components so the cap drops small nodules, and a merged nodule-vessel
component can put its centre outside the radius. Reach measures exactly that, so checkpoints
are chosen for the pipeline they feed (on the demo, the touch-based choice cost 0.14 CPM).

Validation hands over whole slices in series-then-slice order; one series' probabilities are
stacked at a time (float16) and grouped when the next series starts, so memory stays at one CT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import warnings

import numpy as np

from lungmonai.cache.crops import CropCache
from lungmonai.grouping import group_segmentation, segmentation_mask


class NoduleReach:
    """Which ``nodules`` (dicts as :func:`lungmonai.segmentation.data.nodule_list` makes them)
    the pipeline's grouping reaches, from probability slices fed in series-then-slice order.

    ``settings`` is the pipeline's (``seg_threshold``, ``erosion_mm``, ``max_components``);
    ``volumes`` the crop cache, for each series' HU (centre-of-mass weights) and geometry.
    """

    def __init__(self, nodules: Sequence[dict[str, Any]], volumes: CropCache, settings: Any) -> None:
        from lungmonai.pipeline.analysis import erosion_iterations  # the pipeline's own rule

        self.nodules = list(nodules)
        self.volumes = volumes
        self.threshold = float(settings.seg_threshold)
        self.erosion_mm = float(settings.erosion_mm)
        self.max_components = int(settings.max_components)
        self._erosion_iterations = erosion_iterations
        self.reached = np.zeros(len(self.nodules), dtype=bool)
        self.reset()

    def reset(self) -> None:
        self.reached[:] = False
        self._done: set[str] = set()
        self._uid: str | None = None
        self._prob: np.ndarray | None = None

    def update(self, series_uid: str, slice_index: int, prob: np.ndarray) -> None:
        """One slice's probabilities (rows, cols; padding beyond the volume is cut off)."""
        uid = str(series_uid)
        if uid != self._uid:
            self._finish_series()
            if uid in self._done:
                raise ValueError(
                    f"series {uid}: its slices arrived in two runs; reach needs each series' slices "
                    "together (one process, unshuffled validation)"
                )
            volume, _ = self.volumes.read_volume(uid)
            self._uid, self._prob = uid, np.zeros(volume.shape, dtype=np.float16)
        assert self._prob is not None
        rows, cols = self._prob.shape[1:]
        self._prob[int(slice_index)] = np.asarray(prob)[:rows, :cols]

    def _finish_series(self) -> None:
        if self._uid is None or self._prob is None:
            return
        uid, prob = self._uid, self._prob.astype(np.float32)
        self._uid, self._prob = None, None
        self._done.add(uid)
        wanted = [k for k, n in enumerate(self.nodules) if str(n["series_uid"]) == uid]
        if not wanted:
            return
        hu, geometry = self.volumes.read_volume(uid)
        mask = segmentation_mask(
            prob, threshold=self.threshold, erosion_iterations=self._erosion_iterations(geometry.spacing_xyz, self.erosion_mm)
        )
        with warnings.catch_warnings():  # the cap biting is what reach measures, not news
            warnings.filterwarnings("ignore", message="group_segmentation:", category=RuntimeWarning)
            found = group_segmentation(prob, np.asarray(hu), geometry, mask=mask, max_components=self.max_components)
        centres = found[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64).reshape(-1, 3)
        for k in wanted:
            nodule = self.nodules[k]
            distance = np.linalg.norm(centres - np.asarray(nodule["center_xyz"], dtype=np.float64), axis=1)
            self.reached[k] = bool(distance.size and distance.min() <= float(nodule["radius_mm"]))

    def recall(self) -> float:
        """Share of nodules reached (1.0 without nodules); call after the last slice."""
        self._finish_series()
        return float(self.reached.mean()) if len(self.nodules) else 1.0
