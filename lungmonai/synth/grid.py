"""The voxel grid of one synthetic series: shape, spacing and origin, per generation mode.

A synthetic series mirrors one LIDC scan. ``full`` keeps that scan's real pixel and slice
spacing on a 512x512 matrix, as LUNA16 does. ``small`` keeps the physical world the same
(nodule sizes in mm are untouched) but samples it coarser and over a tighter field of view,
so that a whole demo (generation, preparation, three trainings) runs on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungmonai.io.volume import Geometry

MODES = ("small", "full")


@dataclass(frozen=True)
class SeriesGrid:
    """Shape (index, row, col) and ITK geometry of a series; identity direction as in LUNA16."""

    shape_irc: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]

    @property
    def geometry(self) -> Geometry:
        return Geometry(np.array(self.origin_xyz), np.array(self.spacing_xyz), np.eye(3))

    @property
    def spacing_irc(self) -> np.ndarray:
        return np.array(self.spacing_xyz[::-1], dtype=np.float64)

    @property
    def extent_xyz_mm(self) -> np.ndarray:
        """Physical size covered by the voxel centres' cells, xyz."""
        return np.array(self.shape_irc[::-1], dtype=np.float64) * np.array(self.spacing_xyz)

    def axis_mm(self, axis_irc: int) -> np.ndarray:
        """Patient-space coordinate (mm) of every voxel centre along one irc axis."""
        xyz_axis = 2 - axis_irc
        n = self.shape_irc[axis_irc]
        return self.origin_xyz[xyz_axis] + self.spacing_xyz[xyz_axis] * np.arange(n, dtype=np.float64)


def _round_mm(value: float) -> float:
    """Origins like a scanner writes them: two decimals, stable through text round trips."""
    return round(float(value), 2)


SMALL_MAX_SHAPE = (140, 224, 224)


def _full_slices(slice_spacing: float, n_source_slices: int) -> int:
    z_extent = float(np.clip(n_source_slices * float(slice_spacing), 280.0, 360.0))
    return int(round(z_extent / float(slice_spacing)))


def max_voxels(mode: str, slice_spacing: float, n_source_slices: int) -> int:
    """The most voxels :func:`make_grid` gives a series of this scan (exact in ``full`` mode)."""
    if mode == "full":
        return 512 * 512 * _full_slices(slice_spacing, n_source_slices)
    if mode == "small":
        return int(np.prod(SMALL_MAX_SHAPE))
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def make_grid(
    mode: str, rng: np.random.Generator, pixel_spacing: float, slice_spacing: float, n_source_slices: int
) -> SeriesGrid:
    """Grid for one series from its LIDC scan's spacing.

    ``full``: 512x512 at the scan's pixel spacing, the scan's slice spacing, and a slice count
    covering the scan's own z extent clipped to 280-360 mm (LIDC chest coverage).
    ``small``: 224x224 at 1.4-1.6 mm, slices 2.0-2.5 mm (the scan's spacing where it falls in
    that range), 100-140 slices.
    """
    if mode == "full":
        size = 512
        pixel = float(pixel_spacing)
        dz = float(slice_spacing)
        n_slices = _full_slices(slice_spacing, n_source_slices)
    elif mode == "small":
        size = 224
        pixel = float(np.round(rng.uniform(1.4, 1.6), 4))
        dz = float(slice_spacing) if 2.0 <= slice_spacing <= 2.5 else float(np.round(rng.uniform(2.0, 2.5), 2))
        n_slices = int(np.clip(round(rng.uniform(260.0, 320.0) / dz), 100, SMALL_MAX_SHAPE[0]))
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    fov = size * pixel
    # LUNA16 origins: x, y near -fov/2 (scanner centre at 0) with a few mm of table offset;
    # z anywhere from about -400 to -50 depending on the table position.
    origin_x = _round_mm(-fov / 2 + rng.uniform(-12.0, 12.0))
    origin_y = _round_mm(-fov / 2 + rng.uniform(-12.0, 12.0))
    origin_z = _round_mm(rng.uniform(-300.0, -100.0) - rng.uniform(0.0, 60.0))
    return SeriesGrid((n_slices, size, size), (pixel, pixel, dz), (origin_x, origin_y, origin_z))
