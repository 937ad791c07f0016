"""Synthetic nodules of known density: spheres in lung, as the generator draws nodule types."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SPACING = np.array([2.0, 1.5, 1.5])  # the working grid, index/row/col
LUNG_HU, SOLID_HU, GGO_HU, CALCIUM_HU = -850.0, 30.0, -580.0, 400.0


def sphere_nodule(kind: str, radius_mm: float, *, calcified: bool = False, core_fraction: float = 0.6,
                  spacing: np.ndarray = SPACING, realistic: bool = False, rng: np.random.Generator | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(HU float32, contour mask) of a sphere of ``kind`` ('solid', 'ground-glass', 'part-solid':
    solid inside ``core_fraction`` of the radius) in lung; ``calcified``: its inner half at
    bone-like density. ``realistic``: partial-volume edge (sigma 0.5 voxel) and 20 HU noise."""
    half = np.ceil(radius_mm / spacing).astype(int) + 3
    grid = np.stack(np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij"))
    if rng is not None:  # a sub-voxel offset, as a nodule never sits exactly on a voxel
        grid = grid - (rng.uniform(-0.5, 0.5, 3) * spacing)[:, None, None, None]
    dist = np.sqrt((grid**2).sum(axis=0))
    inside = dist <= radius_mm
    if kind == "solid":
        value = np.full(dist.shape, SOLID_HU)
    elif kind == "ground-glass":
        value = np.full(dist.shape, GGO_HU)
    elif kind == "part-solid":
        value = np.where(dist <= core_fraction * radius_mm, SOLID_HU, GGO_HU)
    else:
        raise ValueError(kind)
    if calcified:
        value = np.where(dist <= 0.5 * radius_mm, CALCIUM_HU, value)
    hu = np.where(inside, value, LUNG_HU)
    if realistic:
        rng = rng or np.random.default_rng(0)
        hu = ndimage.gaussian_filter(hu, 0.5) + rng.normal(0.0, 20.0, hu.shape)
    return hu.astype(np.float32), inside


def sphere_set(n_per_kind: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], list[bool]]:
    """Realistic spheres, ``n_per_kind`` of each type, radius 3-10 mm; a fifth of the solid ones calcified."""
    rng = np.random.default_rng(seed)
    nodules, types, calc = [], [], []
    for kind in ("solid", "part-solid", "ground-glass"):
        for k in range(n_per_kind):
            c = kind == "solid" and k % 5 == 0
            nodules.append(sphere_nodule(kind, rng.uniform(3.0, 10.0), calcified=c, core_fraction=rng.uniform(0.45, 0.65),
                                         realistic=True, rng=rng))
            types.append(kind)
            calc.append(c)
    return nodules, types, calc
