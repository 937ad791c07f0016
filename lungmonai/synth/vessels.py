"""Branching, tapering trees (pulmonary vessels, bronchi) grown from each hilum into the lung.

A branch is a slightly curved polyline whose radius tapers; at its end it splits into two
children (Murray-like radius ratios, asymmetric angles) steered away from the hilum, so the
tree radiates towards the pleura like a real pulmonary tree. Branches stop at the lung
boundary or once thinner than the grid can show. The bifurcation points are kept: they are
where LUNA16's candidate detector fires most often, so they become class-0 candidates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lungmonai.synth.tubes import Segments

InsideFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tree:
    """Segments of one tree plus its bifurcation points (K, 3) and their parent radii (K,)."""

    segments: Segments
    bifurcations: np.ndarray
    bifurcation_radii: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _perpendicular(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to unit vector d."""
    r = rng.standard_normal(3)
    return _unit(r - (r @ d) * d)


def _rotate_towards(d: np.ndarray, axis_perp: np.ndarray, angle: float) -> np.ndarray:
    """Tilt unit direction d by ``angle`` radians in the plane spanned by d and axis_perp."""
    return _unit(np.cos(angle) * d + np.sin(angle) * axis_perp)


def grow_tree(
    root: np.ndarray,
    direction: np.ndarray,
    radius: float,
    inside: InsideFn,
    rng: np.random.Generator,
    min_radius: float,
    hilum: np.ndarray,
    max_branches: int = 1500,
    length_factor: tuple[float, float] = (6.0, 10.0),
) -> Tree:
    """Grow one tree breadth-first (deterministic for a given rng state).

    ``inside`` maps points (N, 3) xyz to bool; a branch is cut where it first leaves.
    """
    p0s: list[np.ndarray] = []
    p1s: list[np.ndarray] = []
    r0s: list[float] = []
    r1s: list[float] = []
    bif: list[np.ndarray] = []
    bif_r: list[float] = []
    queue: deque[tuple[np.ndarray, np.ndarray, float, int, int]] = deque(
        [(np.asarray(root, float), _unit(np.asarray(direction, float)), radius, 0, 0)]
    )
    n_branches = 0
    while queue and n_branches < max_branches:
        start, d, r, depth, retries = queue.popleft()
        n_branches += 1
        length = float(np.clip(r * rng.uniform(*length_factor), 4.0, 45.0))
        # Three gently curving pieces.
        pts = [start]
        dirs = d
        for _ in range(3):
            dirs = _rotate_towards(dirs, _perpendicular(dirs, rng), rng.normal(0.0, 0.12))
            pts.append(pts[-1] + dirs * length / 3.0)
        pts_arr = np.array(pts)
        # A root starts in the mediastinum at the hilum: only its children must stay in the lung.
        ok = inside(pts_arr[1:]) if depth > 0 else np.ones(3, dtype=bool)
        n_ok = int(np.argmin(ok)) if not ok.all() else 3
        if n_ok == 0 and retries > 0:
            # Aimed out of the lung: try another direction, bent back towards the hilum's side.
            queue.append((start, _rotate_towards(d, _perpendicular(d, rng), rng.uniform(0.4, 1.2)), r, depth, retries - 1))
            continue
        r_end = r * rng.uniform(0.86, 0.94)
        radii = np.linspace(r, r_end, 4)
        for k in range(n_ok):
            p0s.append(pts_arr[k])
            p1s.append(pts_arr[k + 1])
            r0s.append(radii[k])
            r1s.append(radii[k + 1])
        if n_ok < 3 or r_end < min_radius * 1.15:
            continue
        end = pts_arr[-1]
        bif.append(end)
        bif_r.append(r_end)
        # Children: a major and a minor branch on opposite sides, steered away from the hilum.
        outward = _unit(end - hilum)
        base = _unit(dirs + 0.35 * outward)
        perp = _perpendicular(base, rng)
        major_r = r_end * rng.uniform(0.80, 0.92)
        minor_r = r_end * rng.uniform(0.55, 0.85)
        for child_r, angle in ((major_r, rng.uniform(0.2, 0.5)), (minor_r, -rng.uniform(0.45, 0.95))):
            if child_r >= min_radius:
                queue.append((end, _rotate_towards(base, perp, angle), child_r, depth + 1, 2))
    if not p0s:
        return Tree(Segments.empty(), np.zeros((0, 3)), np.zeros(0))
    segs = Segments(np.array(p0s), np.array(p1s), np.array(r0s), np.array(r1s))
    return Tree(segs, np.array(bif).reshape(-1, 3), np.array(bif_r))


def merge_trees(trees: list[Tree]) -> Tree:
    segs = Segments.concat([t.segments for t in trees])
    bif = np.concatenate([t.bifurcations for t in trees]) if trees else np.zeros((0, 3))
    bif_r = np.concatenate([t.bifurcation_radii for t in trees]) if trees else np.zeros(0)
    return Tree(segs, bif.reshape(-1, 3), bif_r)
