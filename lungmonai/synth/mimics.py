"""Nodule mimics: subpleural scars and tiny granulomas, drawn away from the real nodules.

A detector trained only against clean parenchyma and vessels learns "any blob is a nodule".
Real chests have linear scars and sub-3 mm granulomas that LUNA16 does not annotate; they
are drawn here and become hard class-0 candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungmonai.geometry import irc_to_xyz
from lungmonai.synth.grid import SeriesGrid
from lungmonai.synth.placement import PleuraMap
from lungmonai.synth.tubes import Segments, paint_segments


@dataclass(frozen=True)
class Mimics:
    scar_centres: np.ndarray  # (K, 3) xyz
    granuloma_centres: np.ndarray  # (G, 3) xyz


def _far_from(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    if not len(centres) or not len(points):
        return np.ones(len(points), dtype=bool)
    d = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return np.all(d > radii[None, :], axis=1)


def draw_mimics(
    hu: np.ndarray,
    lung: np.ndarray,
    grid: SeriesGrid,
    pmap: PleuraMap,
    nodule_xyz: np.ndarray,
    nodule_keepout_mm: np.ndarray,
    rng: np.random.Generator,
) -> Mimics:
    """Paint 0-3 scars near the pleura and 0-3 granulomas (radius 0.8-1.4 mm) into ``hu``."""
    coarse_near = np.argwhere((pmap.dist > 2.0) & (pmap.dist < 9.0))
    coarse_deep = np.argwhere(pmap.dist > 8.0)
    step = np.array(pmap.step)
    scars = np.zeros((0, 3))
    if len(coarse_near):
        pick = coarse_near[rng.integers(0, len(coarse_near), size=6)] * step
        xyz = irc_to_xyz(pick.astype(float), grid.geometry)
        scars = xyz[_far_from(xyz, nodule_xyz, nodule_keepout_mm + 15.0)][: rng.integers(0, 4)]
    grans = np.zeros((0, 3))
    if len(coarse_deep):
        pick = coarse_deep[rng.integers(0, len(coarse_deep), size=6)] * step
        xyz = irc_to_xyz(pick.astype(float), grid.geometry)
        grans = xyz[_far_from(xyz, nodule_xyz, nodule_keepout_mm + 10.0)][: rng.integers(0, 4)]
    for c in scars:
        d = rng.standard_normal(3)
        d[2] *= 0.3
        d /= np.linalg.norm(d)
        length = rng.uniform(10.0, 22.0)
        pts = c + np.outer(np.linspace(-0.5, 0.5, 5), d * length) + rng.normal(0, 1.2, (5, 3))
        r = rng.uniform(0.7, 1.3, 5)
        paint_segments(hu, grid, Segments.from_polyline(pts, r), rng.uniform(-150.0, 20.0), region=lung)
    for c in grans:
        r = rng.uniform(0.8, 1.4)
        paint_segments(hu, grid, Segments(c[None], c[None], np.array([r]), np.array([r])), rng.uniform(60.0, 400.0), region=lung)
    return Mimics(scars, grans)
