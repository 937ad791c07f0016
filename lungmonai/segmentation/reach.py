"""Per-nodule reach: would the pipeline's grouping hand this nodule to the classifier?

Touching a nodule somewhere (``NoduleTouches``) is not what the next stage needs. The pipeline
thresholds the probabilities, erodes, labels 3D components, keeps the ``max_components`` it
ranks first and classifies each at its HU-weighted centre, and LUNA16 counts a detection only
within a nodule's radius of its centre. A permissive segmentation touches every nodule, yet
floods the CT with components so the cap drops small nodules, and a merged nodule-vessel
component can put its centre outside the radius. Reach measures exactly that, so checkpoints
are chosen for the pipeline they feed (on the demo, the touch-based choice cost 0.14 CPM).

Validation hands over slices (their lung box) in series-then-slice order; one series' probabilities are
stacked at a time (float16) and grouped when the next series starts, so memory stays at one CT.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from lungmonai.cache.crops import CropCache
from lungmonai.grouping import ComponentCapWarning, mask_and_group


class NoduleReach:
    """Which ``nodules`` (dicts as :func:`lungmonai.segmentation.data.nodule_list` makes them)
    the pipeline's grouping reaches, from probability slices fed in series-then-slice order.

    ``settings`` is the pipeline's (``seg_threshold``, ``erosion_mm``, ``max_components``);
    ``volumes`` the crop cache, for each series' HU (centre-of-mass weights) and geometry.
    Series without nodules are only checked for order, never stacked or grouped.
    """

    def __init__(self, nodules: Sequence[dict[str, Any]], volumes: CropCache, settings: Any) -> None:
        self.nodules = list(nodules)
        self.volumes = volumes
        self.threshold = float(settings.seg_threshold)
        self.erosion_mm = float(settings.erosion_mm)
        self.max_components = int(settings.max_components)
        self._by_series: dict[str, list[int]] = defaultdict(list)
        for k, nodule in enumerate(self.nodules):
            self._by_series[str(nodule["series_uid"])].append(k)
        self.reached = np.zeros(len(self.nodules), dtype=bool)
        self.reset()

    def reset(self) -> None:
        self.reached[:] = False
        self._done: set[str] = set()
        self._uid: str | None = None
        self._prob: np.ndarray | None = None
        self._volume: tuple[np.ndarray, Any] | None = None  # the series' HU memmap and geometry

    def update(self, series_uid: str, slice_index: int, prob: np.ndarray, row0: int = 0, col0: int = 0) -> None:
        """One slice's probabilities (rows, cols) whose pixel (0, 0) is voxel (``row0``, ``col0``);
        padding beyond the volume is cut off, and voxels never given read 0 (outside the lung
        box, as in the pipeline)."""
        uid = str(series_uid)
        if uid != self._uid:
            self._finish_series()
            if uid in self._done:
                raise ValueError(
                    f"series {uid}: its slices arrived in two runs; reach needs each series' slices "
                    "together (one process, unshuffled validation)"
                )
            self._uid = uid
            if uid in self._by_series:
                self._volume = self.volumes.read_volume(uid)
                self._prob = np.zeros(self._volume[0].shape, dtype=np.float16)
        if self._prob is not None:
            rows, cols = self._prob.shape[1:]
            height, width = min(prob.shape[0], rows - row0), min(prob.shape[1], cols - col0)
            self._prob[int(slice_index), row0 : row0 + height, col0 : col0 + width] = np.asarray(prob)[:height, :width]

    def _finish_series(self) -> None:
        uid, prob, volume = self._uid, self._prob, self._volume
        self._uid, self._prob, self._volume = None, None, None
        if uid is None:
            return
        self._done.add(uid)
        if prob is None or volume is None:
            return
        hu, geometry = volume
        with warnings.catch_warnings():  # the cap biting is what reach measures, not news
            warnings.simplefilter("ignore", ComponentCapWarning)
            _, found = mask_and_group(prob.astype(np.float32), np.asarray(hu), geometry, threshold=self.threshold,
                                      erosion_mm=self.erosion_mm, max_components=self.max_components)
        centres = found[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64).reshape(-1, 3)
        for k in self._by_series[uid]:
            nodule = self.nodules[k]
            distance = np.linalg.norm(centres - np.asarray(nodule["center_xyz"], dtype=np.float64), axis=1)
            self.reached[k] = bool(distance.size and distance.min() <= float(nodule["radius_mm"]))

    def recall(self) -> float:
        """Share of nodules reached (1.0 without nodules); call after the last slice."""
        self._finish_series()
        return float(self.reached.mean()) if len(self.nodules) else 1.0
