"""Candidate crops as MONAI dictionary transforms: from the cache in training, from a CT at inference.

Both yield the same thing, a channel-first float32 array (1, 32, 48, 48) of clipped HU centred
on the candidate, so one downstream chain (HU scaling, augmentation) serves both paths.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from lungmonai.cache import CropCache, extract_crop
from lungmonai.cache.crops import ANY_GRID
from lungmonai.geometry import xyz_to_irc
from lungmonai.io.volume import CTVolume


class LoadCandidateCropd(MapTransform):
    """Read the cached crop named by ``series_uid`` and ``series_row`` into ``keys``.

    The cache memory-maps one file per series, so a read is a page-cache copy, not a CT decode.
    """

    def __init__(
        self,
        keys: KeysCollection,
        cache_dir: str | Path,
        crop_shape: Sequence[int] = (32, 48, 48),
        series_key: str = "series_uid",
        row_key: str = "series_row",
        grid_spacing_xyz: Sequence[float] | None | str = ANY_GRID,
    ) -> None:
        super().__init__(keys)
        # With the contract's grid, a cache built on another one is refused, not trained on.
        self.cache = CropCache(cache_dir, crop_shape=tuple(crop_shape), grid_spacing_xyz=grid_spacing_xyz)
        self.series_key = series_key
        self.row_key = row_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        crop = self.cache.read_crop(str(d[self.series_key]), int(d[self.row_key]))
        for key in self.keys:
            d[key] = crop[None].astype(np.float32)
        return d


class CropCandidated(MapTransform):
    """Cut the crop around ``center_xyz`` out of an in-memory ``CTVolume`` held under ``ct_key``.

    Used where nothing is cached (inference on a new CT). Crops reaching outside the volume are
    padded with air (-1000 HU), never shifted, exactly as the cache builds them.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ct_key: str = "ct",
        center_key: str = "center_xyz",
        crop_shape: Sequence[int] = (32, 48, 48),
        hu_clip: tuple[float, float] = (-1000.0, 1000.0),
    ) -> None:
        super().__init__(keys)
        self.ct_key = ct_key
        self.center_key = center_key
        self.crop_shape = tuple(int(s) for s in crop_shape)
        self.hu_clip = hu_clip

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ct: CTVolume = d[self.ct_key]
        center_irc = xyz_to_irc(np.asarray(d[self.center_key], dtype=np.float64), ct.geometry)
        crop = extract_crop(ct.hu, center_irc, self.crop_shape, pad_value=int(self.hu_clip[0]))
        crop = np.clip(crop, *self.hu_clip)
        for key in self.keys:
            d[key] = crop[None].astype(np.float32)
        return d
