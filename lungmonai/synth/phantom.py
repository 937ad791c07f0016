"""Compose the chest phantom (base organs + tubular structures) and finish it like a scanner.

Split in two so that nodules go in between: :func:`render_chest` gives noise-free HU and the
lung mask, the caller inserts nodules, then :func:`finish_ct` applies the scanner's point
spread (slight blur, which also gives every edge its partial-volume ramp) and correlated
quantum noise, and quantises to int16 HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungmonai.synth.anatomy import HU_AIR, HU_BONE_CORTEX, HU_BONE_MARROW, HU_SOFT, ChestParams, render_base, sample_chest
from lungmonai.synth.grid import SeriesGrid
from lungmonai.synth.structures import Structures, build_structures
from lungmonai.synth.tubes import Segments, paint_segments

HU_CARTILAGE = 130.0


@dataclass
class Chest:
    """Noise-free HU (float32, irc), lung mask, and what it was built from."""

    hu: np.ndarray
    lung: np.ndarray
    params: ChestParams
    structures: Structures
    vessel_occupancy: np.ndarray  # float32, max occupancy of pulmonary vessels


def render_chest(grid: SeriesGrid, rng: np.random.Generator) -> Chest:
    """Randomised chest on ``grid``: organs, ribs, great vessels, airways, pulmonary trees."""
    params = sample_chest(grid, rng)
    hu, lung = render_base(grid, params, rng)
    s = build_structures(params, rng, pixel_mm=float(grid.spacing_xyz[0]))
    not_lung = dict(region=lung, region_value=False)
    in_lung = dict(region=lung, region_value=True)
    paint_segments(hu, grid, s.great_vessels, HU_SOFT, **not_lung)
    paint_segments(hu, grid, s.trachea_wall, HU_SOFT, **not_lung)
    paint_segments(hu, grid, s.trachea_lumen, HU_AIR, **not_lung)
    occupancy = np.zeros(grid.shape_irc, dtype=np.float32)
    paint_segments(hu, grid, s.vessels.segments, HU_SOFT, occupancy_out=occupancy, **in_lung)
    b = s.bronchi.segments
    paint_segments(hu, grid, b, HU_SOFT, **in_lung)
    lumen = Segments(b.p0, b.p1, b.r0 * 0.65, b.r1 * 0.65)
    paint_segments(hu, grid, lumen, -960.0, **in_lung)
    paint_segments(hu, grid, s.rib_outer, HU_BONE_CORTEX, **not_lung)
    paint_segments(hu, grid, s.rib_inner, HU_BONE_MARROW, **not_lung)
    paint_segments(hu, grid, s.cartilage, HU_CARTILAGE, **not_lung)
    return Chest(hu, lung, params, s, occupancy)


def finish_ct(hu: np.ndarray, grid: SeriesGrid, rng: np.random.Generator, noise_hu: float | None = None) -> np.ndarray:
    """Scanner look: ~0.6 px blur in plane, 0.4 slice across, plus in-plane correlated noise.

    Noise is white Gaussian smoothed in plane (CT noise is correlated by the reconstruction
    kernel) and rescaled to ``noise_hu`` standard deviation (random 18-30 HU by default).
    Returns int16 clipped to [-1024, 3071], the range a 12-bit scanner stores.
    """
    sigma = 20.0 + 10.0 * rng.random() if noise_hu is None else noise_hu
    out = ndimage.gaussian_filter(hu, sigma=(0.4, 0.6, 0.6), mode="nearest", truncate=3.0)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, 0.7, 0.7), truncate=3.0)
    # Smoothing white noise with a 2D Gaussian of sigma s divides its std by 2*sqrt(pi)*s.
    noise *= np.float32(sigma * 2.0 * np.sqrt(np.pi) * 0.7)
    out += noise
    np.clip(out, -1024, 3071, out=out)
    return np.rint(out).astype(np.int16)
