"""Chest phantom: body wall, lungs, diaphragm, heart, spine, sternum and table, in HU.

Every organ is an implicit shape in patient millimetres relative to the thorax centre
(``u`` towards the patient's left = +x, ``v`` posterior = +y, ``z`` superior), so the same
function both renders a block of slices and answers "is this point in the lung?" for the
vessel-tree growth and the nodule placement. Shapes are sized from the grid's physical field
of view and z coverage and randomised per series; tubular structures (ribs, vessels,
airways) are drawn afterwards by :mod:`lungmonai.synth.structures` and
:mod:`lungmonai.synth.vessels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungmonai.synth.grid import SeriesGrid

# Tissue HU (non-contrast CT).
HU_AIR = -1000.0
HU_FAT = -100.0
HU_MUSCLE = 45.0
HU_SOFT = 40.0
HU_LIVER = 58.0
HU_LUNG = -860.0
HU_BONE_CORTEX = 750.0
HU_BONE_MARROW = 230.0
HU_DISC = 85.0
HU_TABLE = 180.0


@dataclass(frozen=True)
class ChestParams:
    """Sizes and positions (mm) of one randomised chest."""

    cx: float  # thorax centre, patient x / y
    cy: float
    body_a: float  # body semi-axes (lateral, antero-posterior)
    body_b: float
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest wall muscle thickness
    cavity_a: float  # thoracic cavity (inner rib cage) semi-axes
    cavity_b: float
    mediastinum: float  # half-width of the mediastinum at the lung centre level
    lung_cv: float  # lung centres' v
    z_apex: float
    z_taper: float  # where the apex taper starts
    z_recess: float  # lowest point of the costophrenic recesses
    dome_right: float  # dome heights above the recess
    dome_left: float
    heart_c: tuple[float, float, float]  # (u, v, z)
    heart_r: tuple[float, float, float]
    spine_v: float  # vertebral body centre v
    spine_r: float
    disc_period: float
    disc_phase: float
    table_v: float
    lung_hu: float
    lung_gradient: float  # HU denser posteriorly (gravity-dependent)

    @property
    def lung_height(self) -> float:
        return self.z_apex - self.z_recess

    def lung_centre_u(self, side: int) -> float:
        """Centre u of the right (side=-1) or left (side=+1) lung."""
        return side * (self.mediastinum + 0.42 * (self.cavity_a - self.mediastinum))


def sample_chest(grid: SeriesGrid, rng: np.random.Generator) -> ChestParams:
    """Draw a plausible adult chest that fits the grid's field of view and z coverage."""
    fov_x, fov_y, _ = grid.extent_xyz_mm
    z0 = grid.origin_xyz[2]
    height = (grid.shape_irc[0] - 1) * grid.spacing_xyz[2]
    cx = grid.origin_xyz[0] + fov_x / 2 + rng.uniform(-8, 8)
    cy = grid.origin_xyz[1] + fov_y / 2 + rng.uniform(-15, 5)
    body_a = min(rng.uniform(150, 178), 0.47 * fov_x)
    body_b = min(body_a * rng.uniform(0.62, 0.74), 0.40 * fov_y)
    fat = rng.uniform(6, 18)
    muscle = rng.uniform(6, 10)
    rib_layer = 7.0
    cavity_a = body_a - fat - muscle - rib_layer
    cavity_b = body_b - fat - muscle - rib_layer
    z_apex = z0 + height * rng.uniform(0.90, 0.96)
    lung_h = min(height * rng.uniform(0.80, 0.86), z_apex - z0 - 12.0)
    z_recess = z_apex - lung_h
    dome_right = lung_h * rng.uniform(0.22, 0.28)
    dome_left = dome_right - rng.uniform(8, 20)
    heart_r = (cavity_a * rng.uniform(0.36, 0.42), cavity_b * rng.uniform(0.42, 0.48), lung_h * rng.uniform(0.18, 0.21))
    heart_c = (cavity_a * rng.uniform(0.26, 0.34), -cavity_b * rng.uniform(0.28, 0.36), z_recess + dome_left + heart_r[2] * 0.55)
    spine_r = rng.uniform(15, 19)
    return ChestParams(
        cx=cx, cy=cy, body_a=body_a, body_b=body_b, fat=fat, muscle=muscle,
        cavity_a=cavity_a, cavity_b=cavity_b,
        mediastinum=rng.uniform(14, 22), lung_cv=cavity_b * rng.uniform(0.0, 0.08),
        z_apex=z_apex, z_taper=z_apex - lung_h * rng.uniform(0.28, 0.36), z_recess=z_recess,
        dome_right=dome_right, dome_left=dome_left, heart_c=heart_c, heart_r=heart_r,
        spine_v=cavity_b - spine_r * 0.55, spine_r=spine_r,
        disc_period=rng.uniform(24, 29), disc_phase=rng.uniform(0, 30),
        table_v=body_b + rng.uniform(3, 10),
        lung_hu=HU_LUNG + rng.uniform(-25, 25), lung_gradient=rng.uniform(25, 60),
    )


def _apex_taper(z: np.ndarray, p: ChestParams) -> np.ndarray:
    """Lung cross-section scale: 1 below the taper start, a quarter-ellipse to 0 at the apex."""
    t = np.clip((z - p.z_taper) / (p.z_apex - p.z_taper), 0.0, None)
    return np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))


def cavity_scale(z: np.ndarray | float, p: ChestParams) -> np.ndarray:
    """The rib cage narrows towards the thoracic inlet."""
    t = np.clip((z - p.z_taper) / (p.z_apex + 25.0 - p.z_taper), 0.0, 1.0)
    return 1.0 - 0.35 * t**2


def body_inside(u: np.ndarray, v: np.ndarray, z: np.ndarray, p: ChestParams, shrink: float = 0.0) -> np.ndarray:
    """Body outline (flatter back, where the patient lies on the table), shrunk by ``shrink`` mm."""
    a = p.body_a - shrink
    b = p.body_b - shrink
    expo = np.where(v > 0, 3.0, 2.2)
    return (np.abs(u) / a) ** expo + (np.abs(v) / b) ** expo <= 1.0


def cavity_inside(u: np.ndarray, v: np.ndarray, z: np.ndarray, p: ChestParams, grow: float = 0.0) -> np.ndarray:
    """Thoracic cavity (inner surface of the rib cage), grown by ``grow`` mm."""
    s = cavity_scale(z, p)
    return (u / (p.cavity_a * s + grow)) ** 2 + (v / (p.cavity_b * s + grow)) ** 2 <= 1.0


def lung_inside(u: np.ndarray, v: np.ndarray, z: np.ndarray, p: ChestParams) -> np.ndarray:
    """Both lungs: superellipse lobes inside the cavity, above the domes, around heart and spine."""
    s = _apex_taper(z, p)
    inside = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v), np.shape(z)), dtype=bool)
    for side, dome in ((-1, p.dome_right), (1, p.dome_left)):
        cu = p.lung_centre_u(side)
        a_med = 0.42 * (p.cavity_a - p.mediastinum)
        a_lat = 1.3 * (p.cavity_a - abs(cu))
        du = (u - cu) * side  # > 0 laterally
        a = np.where(du > 0, a_lat, a_med) * np.maximum(s, 1e-3)
        dv = v - p.lung_cv
        b = np.where(dv > 0, 1.2 * p.cavity_b, 0.95 * p.cavity_b) * np.maximum(s, 1e-3)
        # At the apex the lungs sit posteriorly; shift the tapering lobes back.
        dv = dv - (1.0 - s) * 0.25 * p.cavity_b
        lobe = (np.abs(du) / a) ** 2.4 + (np.abs(dv) / b) ** 2.4 <= 1.0
        rho2 = np.clip((du / max(a_lat, 1.0)) ** 2 + (dv / p.cavity_b) ** 2, 0.0, 1.0)
        # Dome: highest under the lobe centre, lowest at the recesses, deeper posteriorly.
        floor = p.z_recess + dome * (1.0 - rho2) - 10.0 * (v / p.cavity_b)
        inside |= lobe & (z > floor) & (z < p.z_apex) & (side * u > 0)
    inside &= cavity_inside(u, v, z, p)
    hc, hr = p.heart_c, p.heart_r
    heart = ((u - hc[0]) / (hr[0] + 6)) ** 2 + ((v - hc[1]) / (hr[1] + 6)) ** 2 + ((z - hc[2]) / (hr[2] + 6)) ** 2 <= 1.0
    inside &= ~heart
    # Paravertebral: keep the lungs off the vertebral body and the aorta beside it.
    inside &= (u / (p.spine_r + 14)) ** 2 + ((v - p.spine_v) / (p.spine_r + 20)) ** 2 > 1.0
    return inside


def _spine_hu(u: np.ndarray, v: np.ndarray, z: np.ndarray, p: ChestParams) -> tuple[np.ndarray, np.ndarray]:
    """(bone mask, HU) of vertebral bodies with discs, the neural arch and spinous process."""
    r = np.sqrt(u**2 + (v - p.spine_v) ** 2)
    body = r <= p.spine_r
    cortex = body & (r > p.spine_r - 2.0)
    phase = np.mod(z - p.disc_phase, p.disc_period)
    disc = body & (phase < 5.0)
    canal_v = p.spine_v + p.spine_r + 8.0
    rc = np.sqrt(u**2 + (v - canal_v) ** 2)
    arch = (rc > 7.0) & (rc < 12.0) & (v > p.spine_v + p.spine_r - 2.0)
    spinous = (np.abs(u) < 3.5) & (v > canal_v + 10.0) & (v < canal_v + 40.0)
    transverse = (np.abs(v - canal_v + 2.0) < 4.0) & (np.abs(u) < 32.0) & (np.abs(u) > 8.0)
    bone = body | arch | spinous | transverse
    hu = np.where(cortex | arch | spinous | transverse, HU_BONE_CORTEX, HU_BONE_MARROW)
    hu = np.where(disc & ~cortex, HU_DISC, hu)
    hu = np.where(disc & cortex, HU_DISC + 100.0, hu)
    canal = rc <= 7.0
    return bone | canal, np.where(canal, 20.0, hu)


def render_base(grid: SeriesGrid, p: ChestParams, rng: np.random.Generator, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Base HU volume (float32, irc) and lung mask (bool), rendered in blocks of slices.

    Blocks bound the temporaries to ``block`` slices, which keeps a 512x512x600 full-mode
    series within a few hundred MB.
    """
    n_i, n_r, n_c = grid.shape_irc
    hu = np.empty(grid.shape_irc, dtype=np.float32)
    lung = np.empty(grid.shape_irc, dtype=bool)
    u = (grid.axis_mm(2) - p.cx)[None, None, :]
    v = (grid.axis_mm(1) - p.cy)[None, :, None]
    z_all = grid.axis_mm(0)
    # Low-frequency parenchyma and soft-tissue variation, drawn coarse and interpolated.
    coarse = rng.standard_normal((max(n_i // 8, 2), 12, 12)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, 1.0)
    coarse /= max(float(coarse.std()), 1e-6)
    texture = ndimage.zoom(coarse, (n_i / coarse.shape[0], n_r / 12, n_c / 12), order=1, mode="nearest")
    hc, hr = p.heart_c, p.heart_r
    for start in range(0, n_i, block):
        stop = min(start + block, n_i)
        z = z_all[start:stop][:, None, None]
        shape = (stop - start, n_r, n_c)
        out = np.full(shape, HU_AIR, dtype=np.float32)
        body = body_inside(u, v, z, p)
        muscle_in = body_inside(u, v, z, p, shrink=p.fat)
        # Paraspinal muscles: the back is much thicker than the lateral wall.
        paraspinal = ((u / 55.0) ** 2 + ((v - p.body_b * 0.78) / 30.0) ** 2 <= 1.0) & body
        cavity = cavity_inside(u, v, z, p)
        out[np.broadcast_to(body, shape)] = HU_FAT
        out[np.broadcast_to(muscle_in | paraspinal, shape)] = HU_MUSCLE
        # Mediastinal and abdominal contents: fat-marbled soft tissue.
        inner = np.broadcast_to(cavity, shape)
        below = z < p.z_recess + p.dome_right * 0.6
        liver = below & (u < 30.0) & cavity
        out[inner] = np.where(np.broadcast_to(texture[start:stop] > 0.6, shape)[inner], -80.0, HU_SOFT)
        out[np.broadcast_to(liver, shape)] = HU_LIVER
        heart = ((u - hc[0]) / hr[0]) ** 2 + ((v - hc[1]) / hr[1]) ** 2 + ((z - hc[2]) / hr[2]) ** 2 <= 1.0
        pericardial_fat = (((u - hc[0]) / (hr[0] + 5)) ** 2 + ((v - hc[1]) / (hr[1] + 5)) ** 2 + ((z - hc[2]) / (hr[2] + 5)) ** 2 <= 1.0) & ~heart
        out[np.broadcast_to(pericardial_fat & cavity, shape)] = -90.0
        out[np.broadcast_to(heart, shape)] = HU_SOFT
        lung_blk = lung_inside(u, v, z, p)
        lung_blk = np.broadcast_to(lung_blk, shape)
        gradient = p.lung_hu + p.lung_gradient * (np.clip(v / p.cavity_b, -1, 1) + 1.0) / 2.0
        parenchyma = np.broadcast_to(gradient, shape) + 12.0 * texture[start:stop]
        out[lung_blk] = parenchyma[lung_blk]
        spine, spine_hu = _spine_hu(u, v, z, p)
        spine = np.broadcast_to(spine & body, shape)
        out[spine] = np.broadcast_to(spine_hu, shape)[spine]
        sternum = (u / 13.0) ** 2 + ((v + p.cavity_b + 6.0) / 6.0) ** 2 <= 1.0
        sternum = sternum & (z > p.z_recess + p.dome_right * 0.7) & (z < p.z_apex - 15.0)
        sternum_cortex = sternum & ((u / 11.0) ** 2 + ((v + p.cavity_b + 6.0) / 4.0) ** 2 > 1.0)
        out[np.broadcast_to(sternum, shape)] = HU_BONE_MARROW
        out[np.broadcast_to(sternum_cortex, shape)] = HU_BONE_CORTEX
        # CT table: a thin curved shell under the patient.
        table_curve = p.table_v - 0.0004 * u**2
        table = ((v > table_curve) & (v < table_curve + 4.0) | (v > table_curve + 22.0) & (v < table_curve + 25.0)) & (np.abs(u) < 215.0)
        out[np.broadcast_to(table & ~body, shape)] = HU_TABLE
        hu[start:stop] = out
        lung[start:stop] = lung_blk
    return hu, lung


def patient_uvz(grid: SeriesGrid, p: ChestParams, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient xyz (..., 3) -> phantom (u, v, z)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return xyz[..., 0] - p.cx, xyz[..., 1] - p.cy, xyz[..., 2]
