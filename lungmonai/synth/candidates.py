"""Candidate points like LUNA16's ``candidates.csv``: detector hits, mostly false.

LUNA16's candidates come from several detectors: a few land on each nodule (class 1, within
a millimetre or two of its centre) and the rest (~400 per nodule in LUNA16) land on vessel
bifurcations and crossings, vessel cross-sections, the pleura, scars and plain parenchyma.
The generator reproduces that mix, with ``neg_ratio`` class-0 rows per class-1 row (per
series; a series without nodules gets ``neg_ratio`` of them) so small datasets stay small.
No class-0 point is within a nodule's radius (+1 mm) or inside its mask.
"""

from __future__ import annotations

import numpy as np

from lungmonai.geometry import irc_to_xyz, xyz_to_irc
from lungmonai.synth.grid import SeriesGrid
from lungmonai.synth.placement import PleuraMap

DEFAULT_NEG_RATIO = 20.0
LUNA16_NEG_RATIO = 400.0  # 549,714 class 0 vs 1,351 class 1 in candidates.csv

# Share of class-0 candidates per source.
NEG_SOURCES = {"bifurcation": 0.35, "vessel": 0.25, "pleura": 0.15, "mimic": 0.05, "parenchyma": 0.20}


def positive_candidates(centres_xyz: np.ndarray, radii_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-2 jittered points per nodule (jitter ~1 mm, at most 2 mm and 40% of the radius)."""
    rows = []
    for c, r in zip(centres_xyz, radii_mm):
        n = 2 if rng.random() < 0.3 else 1
        for _ in range(n):
            j = rng.normal(0.0, 1.0, 3)
            limit = min(2.0, 0.4 * float(r))
            norm = float(np.linalg.norm(j))
            if norm > limit:
                j *= limit / norm
            rows.append(c + j)
    return np.array(rows).reshape(-1, 3)


def negative_candidates(
    n: int,
    grid: SeriesGrid,
    lung: np.ndarray,
    labels: np.ndarray,
    pmap: PleuraMap,
    bifurcations_xyz: np.ndarray,
    vessel_xyz: np.ndarray,
    mimic_xyz: np.ndarray,
    nodule_xyz: np.ndarray,
    nodule_radius_mm: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str]]:
    """``n`` class-0 points (xyz) and the source each came from."""
    pools: dict[str, np.ndarray] = {
        "bifurcation": bifurcations_xyz,
        "vessel": vessel_xyz,
        "mimic": mimic_xyz,
    }
    step = np.array(pmap.step)
    near = np.argwhere((pmap.dist > 0.5) & (pmap.dist < 4.0))
    pools["pleura"] = irc_to_xyz((near * step).astype(float), grid.geometry) if len(near) else np.zeros((0, 3))
    deep = np.argwhere(pmap.dist > 3.0)
    pools["parenchyma"] = irc_to_xyz((deep * step + rng.integers(0, step, size=deep.shape)).astype(float), grid.geometry) if len(deep) else np.zeros((0, 3))
    names = list(NEG_SOURCES)
    counts = rng.multinomial(n, [NEG_SOURCES[k] for k in names])
    out: list[np.ndarray] = []
    kinds: list[str] = []
    shortfall = 0
    for name, k in zip(names, counts):
        k = int(k) + (shortfall if name == "parenchyma" else 0)
        pts = _draw_valid(pools[name], k, grid, lung, labels, nodule_xyz, nodule_radius_mm, rng, jitter=1.0)
        if name != "parenchyma":
            shortfall += k - len(pts)
        out.append(pts)
        kinds += [name] * len(pts)
    return np.concatenate(out).reshape(-1, 3), kinds


def _draw_valid(
    pool: np.ndarray,
    k: int,
    grid: SeriesGrid,
    lung: np.ndarray,
    labels: np.ndarray,
    nodule_xyz: np.ndarray,
    nodule_radius_mm: np.ndarray,
    rng: np.random.Generator,
    jitter: float,
) -> np.ndarray:
    """Up to k jittered pool points inside the volume, away from every nodule."""
    if k <= 0 or not len(pool):
        return np.zeros((0, 3))
    idx = rng.integers(0, len(pool), size=k * 3)
    pts = pool[idx] + rng.normal(0.0, jitter, (len(idx), 3))
    irc = xyz_to_irc(pts, grid.geometry)
    inside = np.all((irc >= 0) & (irc < np.array(grid.shape_irc)), axis=1)
    pts, irc = pts[inside], irc[inside]
    ok = labels[irc[:, 0], irc[:, 1], irc[:, 2]] == 0
    if len(nodule_xyz):
        d = np.linalg.norm(pts[:, None, :] - nodule_xyz[None, :, :], axis=2)
        ok &= np.all(d > nodule_radius_mm[None, :] + 1.0, axis=1)
    return pts[ok][:k]
