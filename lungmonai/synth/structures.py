"""Tubular anatomy as segment lists: ribs, great vessels, airways and the pulmonary trees.

Positions come from the chest parameters (:mod:`lungmonai.synth.anatomy`); everything is
returned in patient xyz millimetres, ready for :func:`lungmonai.synth.tubes.paint_segments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungmonai.synth.anatomy import ChestParams, cavity_scale, lung_inside
from lungmonai.synth.tubes import Segments
from lungmonai.synth.vessels import Tree, grow_tree, merge_trees


@dataclass(frozen=True)
class Structures:
    """Everything tubular of one chest."""

    rib_outer: Segments  # cortical bone
    rib_inner: Segments  # marrow
    cartilage: Segments
    great_vessels: Segments
    trachea_wall: Segments
    trachea_lumen: Segments
    vessels: Tree  # pulmonary arteries and veins, inside the lungs
    bronchi: Tree  # bronchial walls (lumen = 0.65 radius), inside the lungs


def _xyz(p: ChestParams, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(u, float) + p.cx, np.asarray(v, float) + p.cy, np.asarray(z, float)], axis=-1)


def hilum(p: ChestParams, side: int) -> np.ndarray:
    """Hilum point (xyz) of the right (-1) or left (+1) lung: medial edge, mid height."""
    z = p.z_recess + 0.58 * p.lung_height + (6.0 if side > 0 else 0.0)
    return _xyz(p, np.array(side * (p.mediastinum + 6.0)), np.array(p.lung_cv - 8.0), np.array(z))


def _ribs(p: ChestParams, rng: np.random.Generator) -> tuple[Segments, Segments, Segments]:
    outer, inner, cart = [], [], []
    n = 12
    gap = (p.lung_height + 20.0) / 10.5
    for side in (-1, 1):
        for k in range(n):
            z_post = p.z_apex + 12.0 - k * gap + rng.normal(0, 2.0)
            phi_end = 1.6 if k == 0 else (2.45 if k < 9 else 2.0 - 0.15 * (k - 9))
            phi = np.linspace(0.32, phi_end, 24)
            drop = (28.0 if k == 0 else 62.0) * (1.0 - np.cos(phi)) / 2.0
            z = z_post - drop
            s = cavity_scale(z, p)
            a = p.cavity_a * s + 4.5
            b = p.cavity_b * s + 4.5
            u = side * a * np.sin(phi)
            v = b * np.cos(phi)
            pts = _xyz(p, u, v, z)
            r = np.full(len(phi), rng.uniform(4.2, 5.2))
            outer.append(Segments.from_polyline(pts, r))
            inner.append(Segments.from_polyline(pts, r - 1.7))
            if k < 9:  # costal cartilage to the sternum
                phi_c = np.linspace(phi_end, 2.95, 8)
                zc = z[-1] - 8.0 * (phi_c - phi_end)
                sc = cavity_scale(zc, p)
                pts_c = _xyz(p, side * (p.cavity_a * sc + 4.5) * np.sin(phi_c), (p.cavity_b * sc + 4.5) * np.cos(phi_c), zc)
                cart.append(Segments.from_polyline(pts_c, np.full(len(phi_c), 3.8)))
    return Segments.concat(outer), Segments.concat(inner), Segments.concat(cart)


def _great_vessels(p: ChestParams, rng: np.random.Generator) -> tuple[Segments, Segments, Segments]:
    """Aorta (ascending, arch, descending), pulmonary trunk and arteries, SVC; trachea and main bronchi."""
    hc, hr = p.heart_c, p.heart_r
    z_hil = hilum(p, -1)[2]
    z_arch = min(z_hil + 0.2 * p.lung_height, p.z_apex - 15.0)
    desc_u, desc_v = p.spine_r * 0.95, p.spine_v - p.spine_r * 0.75
    ao_r = rng.uniform(10.5, 13.0)
    z_low = p.z_recess - 80.0
    asc_base = (hc[0] - 0.35 * hr[0], hc[1] + 0.3 * hr[1], hc[2] + 0.6 * hr[2])
    asc_top = (6.0, -0.32 * p.cavity_b, z_arch - 6.0)
    arch_mid = (10.0, -0.05 * p.cavity_b, z_arch + 8.0)
    desc_top = (desc_u, desc_v, z_arch - 8.0)
    aorta = np.array([asc_base, asc_top, arch_mid, desc_top, (desc_u, desc_v, z_low)])
    parts = [Segments.from_polyline(_xyz(p, aorta[:, 0], aorta[:, 1], aorta[:, 2]), np.array([ao_r + 2, ao_r + 1, ao_r, ao_r, ao_r - 1]))]
    trunk = np.array([(hc[0] - 0.05 * hr[0], hc[1] - 0.2 * hr[1], hc[2] + 0.55 * hr[2]), (p.mediastinum * 0.6, -0.12 * p.cavity_b, z_hil + 10.0)])
    parts.append(Segments.from_polyline(_xyz(p, trunk[:, 0], trunk[:, 1], trunk[:, 2]), np.array([13.0, 11.0])))
    hl, hr_ = hilum(p, 1), hilum(p, -1)
    pa = np.array([trunk[1], (hl[0] - p.cx, hl[1] - p.cy, hl[2])])
    parts.append(Segments.from_polyline(_xyz(p, pa[:, 0], pa[:, 1], pa[:, 2]), np.array([10.0, 8.0])))
    rpa = np.array([trunk[1], (0.0, -0.02 * p.cavity_b, z_hil + 8.0), (hr_[0] - p.cx, hr_[1] - p.cy, hr_[2])])
    parts.append(Segments.from_polyline(_xyz(p, rpa[:, 0], rpa[:, 1], rpa[:, 2]), np.array([9.5, 9.0, 8.0])))
    svc = np.array([(-24.0, -0.28 * p.cavity_b, p.z_apex + 30.0), (-22.0, -0.26 * p.cavity_b, hc[2] + 0.7 * hr[2])])
    parts.append(Segments.from_polyline(_xyz(p, svc[:, 0], svc[:, 1], svc[:, 2]), np.array([9.0, 10.0])))
    great = Segments.concat(parts)
    # Airways: trachea anterior to the oesophagus and spine, carina, main bronchi to the hila.
    tv = p.spine_v - p.spine_r - 12.0
    z_car = z_hil + 0.08 * p.lung_height
    carina = np.array([0.0, tv + 4.0, z_car])
    trachea = np.array([(0.0, tv, p.z_apex + 60.0), carina])
    walls = [Segments.from_polyline(_xyz(p, trachea[:, 0], trachea[:, 1], trachea[:, 2]), np.array([10.0, 9.5]))]
    lumens = [Segments.from_polyline(_xyz(p, trachea[:, 0], trachea[:, 1], trachea[:, 2]), np.array([8.0, 7.6]))]
    for side in (-1, 1):
        h = hilum(p, side)
        mb = np.array([carina, (h[0] - p.cx, h[1] - p.cy + 6.0, h[2] - 4.0)])
        walls.append(Segments.from_polyline(_xyz(p, mb[:, 0], mb[:, 1], mb[:, 2]), np.array([7.5, 6.0])))
        lumens.append(Segments.from_polyline(_xyz(p, mb[:, 0], mb[:, 1], mb[:, 2]), np.array([5.8, 4.4])))
    return great, Segments.concat(walls), Segments.concat(lumens)


def _lung_trees(p: ChestParams, rng: np.random.Generator, min_radius: float, bronchial: bool) -> Tree:
    """Pulmonary trees from each hilum towards upper, middle/lingula and lower lobes."""

    def inside(pts: np.ndarray) -> np.ndarray:
        return lung_inside(pts[:, 0] - p.cx, pts[:, 1] - p.cy, pts[:, 2], p)

    trees = []
    for side in (-1, 1):
        h = hilum(p, side)
        # (lateral, posterior, superior) preferred directions of the lobar roots.
        if bronchial:
            roots = [(0.5, 0.2, 0.8), (0.7, -0.5, -0.2), (0.4, 0.5, -0.75)]
            r0 = 4.0
        else:
            roots = [(0.4, 0.3, 0.85), (0.6, -0.1, 0.6), (0.8, -0.5, -0.1), (0.6, 0.5, -0.6), (0.35, 0.35, -0.85), (0.8, 0.1, -0.4)]
            r0 = 5.2
        for lat, post, sup in roots:
            d = np.array([side * lat, post, sup]) + rng.normal(0, 0.15, 3)
            start = h + np.array([side * 4.0, 0.0, 0.0]) + rng.normal(0, 2.0, 3)
            trees.append(
                grow_tree(start, d, r0 * rng.uniform(0.85, 1.1), inside, rng, min_radius, h,
                          max_branches=60 if bronchial else 900,
                          length_factor=(7.0, 11.0) if bronchial else (4.5, 8.0))
            )
    return merge_trees(trees)


def _peripheral_vessels(p: ChestParams, rng: np.random.Generator, n: int, min_radius: float) -> Segments:
    """Short, thin, hilum-radial vessel pieces scattered through the lung.

    A tree grown to the pleura would need tens of thousands of branches; what an axial slice
    shows of the periphery is many small vessel sections whose parents lie out of plane, so
    scattered pieces give the right density at a fraction of the cost.
    """
    lo = np.array([-p.cavity_a, -p.cavity_b, p.z_recess])
    hi = np.array([p.cavity_a, p.cavity_b, p.z_apex])
    pts = lo + (hi - lo) * rng.random((n * 4, 3))
    pts = pts[lung_inside(pts[:, 0], pts[:, 1], pts[:, 2], p)][:n]
    centres = _xyz(p, pts[:, 0], pts[:, 1], pts[:, 2])
    h = np.where((pts[:, 0] < 0)[:, None], hilum(p, -1)[None], hilum(p, 1)[None])
    radial = centres - h
    dist = np.linalg.norm(radial, axis=1, keepdims=True)
    direction = radial / np.maximum(dist, 1e-6) + rng.normal(0, 0.45, centres.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = rng.uniform(6.0, 16.0, (len(centres), 1))
    r0 = np.clip(2.2 - 0.012 * dist[:, 0] + rng.normal(0, 0.25, len(centres)), min_radius, 1.8)
    p0 = centres - direction * length / 2
    p1 = centres + direction * length / 2
    keep = lung_inside(p0[:, 0] - p.cx, p0[:, 1] - p.cy, p0[:, 2], p) & lung_inside(p1[:, 0] - p.cx, p1[:, 1] - p.cy, p1[:, 2], p)
    return Segments(p0[keep], p1[keep], r0[keep], np.maximum(r0[keep] * 0.75, min_radius * 0.8))


def build_structures(p: ChestParams, rng: np.random.Generator, pixel_mm: float) -> Structures:
    """All tubular structures; the finest vessel drawn is about half an in-plane pixel."""
    rib_outer, rib_inner, cartilage = _ribs(p, rng)
    great, wall, lumen = _great_vessels(p, rng)
    min_r = max(0.45 * pixel_mm, 0.45)
    trees = _lung_trees(p, rng, min_radius=min_r, bronchial=False)
    scattered = _peripheral_vessels(p, rng, 1400, min_r)
    vessels = Tree(Segments.concat([trees.segments, scattered]), trees.bifurcations, trees.bifurcation_radii)
    bronchi = _lung_trees(p, rng, min_radius=max(1.0, 0.8 * pixel_mm), bronchial=True)
    return Structures(rib_outer, rib_inner, cartilage, great, wall, lumen, vessels, bronchi)
