"""The crop transform chains of the classifier and of the malignancy model fine-tuned from it.

Both stages cut the same crops, scale HU the same way and augment alike, so the chains are built
here once rather than written out in each bundle's config: training and validation read crops
from the cache, inference and the pipeline cut them from the CT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import Compose, EnsureTyped, RandFlipd, ScaleIntensityRanged

from lungmonai.cache.crops import ANY_GRID
from lungmonai.classification.transforms import CropCandidated, LoadCandidateCropd
from lungmonai.transforms import RandGaussianNoiseTorchd, RandInPlaneAffined


def scale_hu(hu_window: Sequence[float]) -> ScaleIntensityRanged:
    """HU clipped to ``hu_window`` and mapped to [-1, 1]."""
    return ScaleIntensityRanged(keys="image", a_min=float(hu_window[0]), a_max=float(hu_window[1]),
                                b_min=-1.0, b_max=1.0, clip=True)


def crop_augmentation(
    crop_shape: Sequence[int],
    flip: bool = True,
    offset: float = 0.1,
    scale: float = 0.2,
    rotate: bool = True,
    noise_std: float = 0.0,
) -> list[Any]:
    """The book's augmentation of a scaled crop: a random flip of each axis, one in-plane affine
    (rotation up to pi, scale within +-``scale``, shift up to ``offset`` of the crop's half size),
    then Gaussian noise of ``noise_std`` (in scaled units). A switched-off step stays in the chain
    with probability 0, so each transform keeps its place in the seeded random streams."""
    shape = [int(s) for s in crop_shape]
    flips = [RandFlipd(keys="image", prob=0.5 if flip else 0.0, spatial_axis=axis) for axis in range(3)]
    affine = RandInPlaneAffined(
        keys="image",
        prob=1.0 if (rotate or scale > 0 or offset > 0) else 0.0,
        rotate_range=np.pi if rotate else 0.0,
        scale_range=[float(scale)] * 3,
        translate_range=[float(offset) * s / 2.0 for s in shape],
    )
    noise = RandGaussianNoiseTorchd(keys="image", prob=1.0 if noise_std > 0 else 0.0, mean=0.0, std=float(noise_std))
    return [*flips, affine, noise]


def cached_crop_transform(
    cache_dir: str | Path, crop_shape: Sequence[int], hu_window: Sequence[float], augmentation: Sequence[Any] = (),
    grid_spacing_xyz: Sequence[float] | None | str = ANY_GRID,
) -> Compose:
    """Training and validation: the cached crop (on the working grid ``grid_spacing_xyz``), HU
    scaled, ``augmentation``, as tensors."""
    load = LoadCandidateCropd(keys="image", cache_dir=cache_dir, crop_shape=crop_shape, grid_spacing_xyz=grid_spacing_xyz)
    to_tensor = EnsureTyped(keys=["image", "label"], track_meta=False)
    return Compose([load, scale_hu(hu_window), *augmentation, to_tensor])


def ct_crop_transform(crop_shape: Sequence[int], hu_window: Sequence[float]) -> Compose:
    """Inference: the crop cut from the CT around the candidate, HU scaled."""
    crop = CropCandidated(keys="image", crop_shape=crop_shape, hu_clip=tuple(hu_window))
    return Compose([crop, scale_hu(hu_window)])
