"""Where each nodule goes: wholly inside the lung, never touching another nodule.

Real nodules are not uniformly spread: many are juxta-pleural (abutting the chest wall or
fissure) and many sit on a vessel. Both are what makes detection hard, so placement draws a
kind per nodule (free / juxta-pleural / perivascular) and looks for a position of that kind
with a coarse distance-to-pleura map, then checks the exact mask voxel by voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungmonai.geometry import irc_to_xyz, xyz_to_irc
from lungmonai.synth.grid import SeriesGrid

KINDS = ("free", "juxtapleural", "perivascular")
KIND_P = (0.5, 0.3, 0.2)


@dataclass(frozen=True)
class Placement:
    """A nodule mask placed at ``start`` (irc of the mask box's first voxel)."""

    source_index: int
    mask: np.ndarray
    start: tuple[int, int, int]
    kind: str
    touches_pleura: bool
    centre_xyz: tuple[float, float, float]

    @property
    def box(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.mask.shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class PleuraMap:
    """Distance (mm) to the nearest non-lung voxel on a coarse grid, with its stride."""

    dist: np.ndarray
    step: tuple[int, int, int]

    def at(self, irc: np.ndarray) -> np.ndarray:
        idx = np.asarray(irc) // np.asarray(self.step)
        idx = np.minimum(idx, np.array(self.dist.shape) - 1)
        return self.dist[idx[..., 0], idx[..., 1], idx[..., 2]]


def pleura_map(lung: np.ndarray, grid: SeriesGrid) -> PleuraMap:
    """Coarse (~3 mm) Euclidean distance to the lung boundary, cheap even for full mode."""
    sp = grid.spacing_irc
    step = tuple(int(max(1, round(3.0 / s))) for s in sp)
    coarse = lung[:: step[0], :: step[1], :: step[2]]
    dist = ndimage.distance_transform_edt(coarse, sampling=sp * np.array(step))
    return PleuraMap(dist.astype(np.float32), step)  # type: ignore[arg-type]


def mask_centre_irc(mask: np.ndarray) -> np.ndarray:
    """Centre of a mask (irc, within its box): the centroid, or the mask voxel nearest to it
    when the centroid falls outside (crescent-shaped nodules), so the centre is always in it."""
    nz = np.argwhere(mask)
    c = nz.mean(axis=0)
    r = np.floor(c + 0.5).astype(int)
    if mask[tuple(r)]:
        return c
    return nz[np.argmin(((nz - c) ** 2).sum(axis=1))].astype(np.float64)


def mask_radius_mm(mask: np.ndarray, spacing_irc: np.ndarray) -> float:
    """Largest distance from the centre to a mask voxel, plus half a voxel."""
    nz = np.argwhere(mask)
    c = mask_centre_irc(mask)
    return float(np.sqrt((((nz - c) * spacing_irc) ** 2).sum(axis=1)).max() + 0.5 * spacing_irc.max())


def _fits(mask: np.ndarray, start: np.ndarray, lung: np.ndarray, occupied: np.ndarray) -> bool:
    stop = start + np.array(mask.shape)
    if np.any(start < 0) or np.any(stop > np.array(lung.shape)):
        return False
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    return bool(lung[box][mask].all() and not occupied[box][mask].any())


def _candidate_voxels(kind: str, pmap: PleuraMap, radius: float, vessel_points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to 80 candidate centre voxels (irc, full grid) for a nodule of ``radius`` mm."""
    if kind == "perivascular" and len(vessel_points):
        ok = pmap.at(vessel_points) > radius + 3.0
        pts = vessel_points[ok]
        if len(pts):
            return pts[rng.permutation(len(pts))[:80]]
        return np.zeros((0, 3), dtype=int)
    if kind == "juxtapleural":
        sel = (pmap.dist > max(radius - 3.0, 1.0)) & (pmap.dist < radius + 2.0)
    else:
        sel = pmap.dist > radius + 4.0
    coarse = np.argwhere(sel)
    if not len(coarse):
        return np.zeros((0, 3), dtype=int)
    coarse = coarse[rng.permutation(len(coarse))[:80]]
    jitter = rng.integers(0, np.array(pmap.step), size=coarse.shape)
    return coarse * np.array(pmap.step) + jitter


def place_nodules(
    masks: list[np.ndarray],
    lung: np.ndarray,
    grid: SeriesGrid,
    vessel_points_irc: np.ndarray,
    pmap: PleuraMap,
    rng: np.random.Generator,
) -> tuple[list[Placement], list[int]]:
    """Place every mask (largest first, so big ones still find room); returns placements in
    source order and the indices of masks that did not fit anywhere."""
    sp = grid.spacing_irc
    occupied = np.zeros(lung.shape, dtype=bool)
    placed: dict[int, Placement] = {}
    dropped: list[int] = []
    kinds = rng.choice(len(KINDS), size=len(masks), p=KIND_P)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for i in order:
        mask = masks[i]
        centre = mask_centre_irc(mask)
        radius = mask_radius_mm(mask, sp)
        result = None
        fallback = None
        for kind in dict.fromkeys([KINDS[kinds[i]], "free", "juxtapleural"]):
            for c in _candidate_voxels(kind, pmap, radius, vessel_points_irc, rng):
                if kind == "perivascular":
                    # Beside the vessel: shift off its axis by about the nodule's radius.
                    d = rng.standard_normal(3)
                    d /= np.linalg.norm(d)
                    c = c + np.round(d * radius * 0.8 / sp).astype(int)
                start = np.floor(c - centre + 0.5).astype(int)
                if _fits(mask, start, lung, occupied):
                    if kind != "juxtapleural" or _touches_pleura(mask, start, lung):
                        result = (kind, start)
                        break
                    # Fits but floats a little off the pleura: keep as a fallback only.
                    fallback = fallback or ("free", start)
            result = result or fallback
            if result:
                break
        if result is None:
            dropped.append(i)
            continue
        kind, start = result
        _mark_occupied(occupied, mask, start, margin=3)
        touches = _touches_pleura(mask, start, lung)
        centre_irc = np.asarray(start) + centre
        # Rounded as the CSVs store it, so the check below holds for the written value.
        centre_xyz = np.round(irc_to_xyz(centre_irc, grid.geometry), 4)
        # Round-trip through the ITK rounding every reader uses; at a rounding tie fall back
        # to the exact centre of the nearest mask voxel.
        back = xyz_to_irc(centre_xyz, grid.geometry) - np.asarray(start)
        if np.any(back < 0) or np.any(back >= np.array(mask.shape)) or not mask[tuple(back)]:
            nz = np.argwhere(mask)
            centre_irc = np.asarray(start) + nz[np.argmin(((nz - centre) ** 2).sum(axis=1))]
            centre_xyz = np.round(irc_to_xyz(centre_irc.astype(np.float64), grid.geometry), 4)
        placed[i] = Placement(i, mask, tuple(int(s) for s in start), kind, touches, tuple(float(v) for v in centre_xyz))
    return [placed[i] for i in sorted(placed)], sorted(dropped)


def _mark_occupied(occupied: np.ndarray, mask: np.ndarray, start: np.ndarray, margin: int) -> None:
    """Reserve the mask grown by ``margin`` voxels so later nodules keep their distance."""
    grown = ndimage.binary_dilation(np.pad(mask, margin), iterations=margin)
    lo = np.asarray(start) - margin
    hi = lo + np.array(grown.shape)
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, np.array(occupied.shape))
    src = tuple(slice(a - l, b - l) for a, b, l in zip(clo, chi, lo))
    occupied[tuple(slice(a, b) for a, b in zip(clo, chi))] |= grown[src]


def _touches_pleura(mask: np.ndarray, start: np.ndarray, lung: np.ndarray) -> bool:
    """Whether the mask grown by one voxel reaches non-lung (a juxta-pleural nodule)."""
    grown = ndimage.binary_dilation(np.pad(mask, 1))
    lo = np.asarray(start) - 1
    hi = lo + np.array(grown.shape)
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, np.array(lung.shape))
    if np.any(clo != lo) or np.any(chi != hi):
        return True
    box = tuple(slice(a, b) for a, b in zip(clo, chi))
    return not bool(lung[box][grown].all())
