"""Nodule appearance from the radiologists' ratings: texture and calcification.

LIDC texture 1-2 is ground-glass, 3 part-solid, 4-5 solid; calcification 6 means absent and
1-5 are popcorn, laminated, solid, non-central and central. The nodule HU map follows the
reads' median texture and majority calcification, so what the images show agrees with what
the radiologists recorded. Edges are blended with a sub-voxel blur (partial volume).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import ndimage

CALCIFICATION_ABSENT = 6


def consensus_texture(reads_ratings: list[dict[str, int]]) -> int:
    return int(np.floor(np.median([r["texture"] for r in reads_ratings]) + 0.5))


def consensus_calcification(reads_ratings: list[dict[str, int]]) -> int:
    """Pattern 1-5 when at least half the reads call it calcified, else 6 (absent)."""
    values = [r["calcification"] for r in reads_ratings]
    calcified = [v for v in values if v < CALCIFICATION_ABSENT]
    if len(calcified) * 2 < len(values):
        return CALCIFICATION_ABSENT
    counts = Counter(calcified)
    return min(counts, key=lambda v: (-counts[v], v))


def nodule_hu(mask: np.ndarray, spacing_irc: np.ndarray, texture: int, calcification: int, rng: np.random.Generator) -> np.ndarray:
    """HU (float32) over the mask's box; values outside the mask are those of the nearest
    nodule voxel, so blending at the edge ramps towards the nodule's own rim tissue."""
    inside_mm = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing_irc)[1:-1, 1:-1, 1:-1]
    depth = float(inside_mm.max())
    solid = rng.uniform(5.0, 45.0)
    ggo = rng.uniform(-660.0, -480.0)
    if texture <= 2:
        hu = np.full(mask.shape, ggo, dtype=np.float32)
    elif texture == 3:
        core = inside_mm > depth * rng.uniform(0.35, 0.55)
        hu = np.where(core, solid, ggo).astype(np.float32)
    else:
        hu = np.full(mask.shape, solid, dtype=np.float32)
    if calcification < CALCIFICATION_ABSENT:
        calc_hu = rng.uniform(250.0, 650.0)
        if calcification == 3:  # solid
            calc = mask.copy()
        elif calcification == 5:  # central
            calc = inside_mm > depth * 0.5
        elif calcification == 2:  # laminated: concentric shells
            calc = np.sin(inside_mm * 2.0 * np.pi / 2.5) > 0.2
        else:  # 1 popcorn (several blobs) or 4 non-central (one eccentric blob)
            nz = np.argwhere(mask)
            n_blobs = 4 if calcification == 1 else 1
            centres = nz[rng.integers(0, len(nz), size=n_blobs)]
            grid = np.indices(mask.shape).reshape(3, -1).T
            r_blob = max(depth * (0.45 if calcification == 1 else 0.7), float(spacing_irc.max()) * 0.6)
            d2 = np.min([(((grid - c) * spacing_irc) ** 2).sum(axis=1) for c in centres], axis=0)
            calc = (d2 <= r_blob**2).reshape(mask.shape)
        calc &= mask
        if not calc.any():
            calc = inside_mm >= depth * 0.99
        hu = np.where(calc, calc_hu, hu).astype(np.float32)
    # Mild internal heterogeneity.
    hu += ndimage.gaussian_filter(rng.standard_normal(mask.shape).astype(np.float32), 1.0) * 25.0
    # Extend values outward (nearest nodule voxel) for the edge blend.
    _, idx = ndimage.distance_transform_edt(~mask, return_indices=True)
    return hu[tuple(idx)]


def blend_nodule(hu: np.ndarray, mask: np.ndarray, start: tuple[int, int, int], values: np.ndarray, pad: int = 2) -> None:
    """Composite the nodule into ``hu`` in place with a partial-volume edge (sigma 0.5 voxel)."""
    padded = np.pad(mask.astype(np.float32), pad)
    frac = ndimage.gaussian_filter(padded, 0.5)
    frac[np.pad(mask, pad)] = np.maximum(frac[np.pad(mask, pad)], 0.85)
    vals = np.pad(values, pad, mode="edge")
    lo = np.asarray(start) - pad
    hi = lo + np.array(padded.shape)
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, np.array(hu.shape))
    src = tuple(slice(a - l, b - l) for a, b, l in zip(clo, chi, lo))
    sub = hu[tuple(slice(a, b) for a, b in zip(clo, chi))]
    # Never darker than what is already there: vessels stay visible through ground glass.
    target = np.maximum(vals[src], sub)
    sub += (target - sub) * frac[src]
