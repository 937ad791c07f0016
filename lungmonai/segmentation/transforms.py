"""Load seven-slice windows and their labels from the caches, as a MONAI dictionary transform.

One read of the memory-mapped volume and label caches per sample: no CT decode, no mask
building. Training items get a ``window`` x ``window`` patch (96x96 as in the book, cut down
to 64x64 by a later random crop so the nodule is not always centred); validation items a
slice's lung box, padded to a multiple of ``divisible`` so the U-Net's pooling lines up.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Randomizable

from lungmonai.segmentation.label_cache import LabelCache
from lungmonai.segmentation.windows import AIR_HU, read_label_patch, read_window


class LoadSliceWindowd(MapTransform, Randomizable):
    """Item (``series_uid``, ``kind``, ``slice``, ``row``, ``col``, ``height``, ``width``; see
    :mod:`lungmonai.segmentation.data`) -> ``image`` float32
    ``(2*context+1, H, W)`` clipped HU and ``label`` float32 ``(1, H, W)`` in {0, 1}.

    ``kind`` ``random`` draws its slice and centre here (uniform over the volume), so every
    epoch sees new places; the draw uses MONAI's per-worker random state. ``labels`` is the
    label cache already built for the series (:func:`lungmonai.segmentation.data.prepare_labels`).
    """

    def __init__(
        self,
        labels: LabelCache,
        window: int = 96,
        context: int = 3,
        divisible: int = 8,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        MapTransform.__init__(self, [image_key, label_key])
        self.labels = labels
        self.volumes = labels.volumes
        self.window = int(window)
        self.context = int(context)
        self.divisible = int(divisible)
        self.image_key = image_key
        self.label_key = label_key

    def randomize(self, data: Any = None) -> None:  # draws happen per item in __call__
        pass

    def _place(self, d: Mapping[Hashable, Any], shape: tuple[int, ...]) -> tuple[int, int, int]:
        if d["kind"] == "random":
            return (int(self.R.randint(shape[0])), int(self.R.randint(shape[1])), int(self.R.randint(shape[2])))
        return int(d["slice"]), int(d["row"]), int(d["col"])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        uid = str(d["series_uid"])
        volume, _ = self.volumes.read_volume(uid)
        labels = self.labels.read_labels(uid)
        if d["kind"] == "slice":  # the slice's lung box from (row, col), padded to the common extent
            index, row0, col0 = int(d["slice"]), int(d["row"]), int(d["col"])
            size = tuple(-(-int(s) // self.divisible) * self.divisible for s in (d["height"], d["width"]))
        else:
            index, row, col = self._place(d, volume.shape)
            size = (self.window, self.window)
            row0, col0 = row - self.window // 2, col - self.window // 2
            d["slice"], d["row"], d["col"] = index, row, col
        image = read_window(volume, index, row0, col0, size, self.context, AIR_HU)
        label = read_label_patch(labels, index, row0, col0, size)
        d[self.image_key] = image.astype(np.float32)
        d[self.label_key] = label.astype(np.float32)
        return d
