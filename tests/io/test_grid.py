"""The working grid: positions, interpolation, masks, and the way back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungmonai.geometry import irc_to_xyz, xyz_to_irc_continuous
from lungmonai.io.grid import array_to_grid, from_grid, grid_shape, resample_axes, to_grid
from lungmonai.io.volume import CTVolume, Geometry


def _ct(hu: np.ndarray, spacing_xyz=(0.7, 0.7, 1.25), origin=(-100.0, -80.0, -300.0)) -> CTVolume:
    return CTVolume(hu.astype(np.int16), Geometry(np.array(origin), np.array(spacing_xyz)), Path("ct.mhd"), "uid")


def test_a_ct_already_on_the_grid_comes_back_untouched() -> None:
    ct = _ct(np.random.default_rng(0).integers(-1000, 1000, (6, 7, 8)))
    assert to_grid(ct, (0.7, 0.7, 1.25)) is ct
    assert to_grid(ct, None) is ct


def test_linear_resampling_keeps_a_linear_ramp_in_patient_space_exact() -> None:
    # HU = 2 * z_mm + x_mm: linear in patient space, so linear interpolation must reproduce it.
    spacing = np.array([0.7, 0.7, 1.25])
    i, r, c = np.meshgrid(np.arange(40), np.arange(30), np.arange(50), indexing="ij")
    hu = 2.0 * (i * spacing[2]) + c * spacing[0]
    ct = _ct(np.round(hu), spacing_xyz=spacing, origin=(0, 0, 0))

    grid = to_grid(ct, (1.0, 1.0, 1.0))

    assert grid.shape_irc == grid_shape(ct.shape_irc, ct.geometry.spacing_irc, (1.0, 1.0, 1.0)) == (49, 21, 35)
    assert np.allclose(grid.geometry.origin_xyz, ct.geometry.origin_xyz) and np.allclose(grid.geometry.spacing_xyz, 1.0)
    gi, _, gc = np.meshgrid(*(np.arange(n) for n in grid.shape_irc), indexing="ij")
    assert np.abs(grid.hu - (2.0 * gi + gc)).max() <= 1  # rounding of the int16 source and result


def test_a_point_keeps_its_patient_coordinates_on_the_grid() -> None:
    hu = np.full((30, 40, 40), -1000)
    hu[12, 16, 22] = 1000
    hu[12, 16, 25] = 1000
    ct = _ct(hu, spacing_xyz=(0.6, 0.6, 0.625))
    kept, between = (irc_to_xyz(np.array(irc), ct.geometry) for irc in ([12, 16, 22], [12, 16, 25]))

    grid = to_grid(ct, (1.2, 1.2, 1.25))  # every second voxel of the CT, same origin

    assert xyz_to_irc_continuous(kept, grid.geometry).tolist() == pytest.approx([6, 8, 11])
    assert grid.hu[6, 8, 11] == 1000  # on a grid voxel: kept as it is
    assert xyz_to_irc_continuous(between, grid.geometry).tolist() == pytest.approx([6, 8, 12.5])
    finer = to_grid(ct, (0.3, 0.6, 0.625))  # twice as fine along x: the new voxels lie halfway
    assert finer.hu[12, 16, 44] == 1000 and finer.hu[12, 16, 43] == finer.hu[12, 16, 45] == 0


def test_masks_stay_binary_and_come_back_onto_the_ct_grid() -> None:
    mask = np.zeros((20, 40, 40), np.uint8)
    mask[8:12, 10:30, 15:25] = 1
    geometry = Geometry(np.zeros(3), np.array([0.5, 0.5, 1.0]))

    on_grid, grid = array_to_grid(mask, geometry, (1.0, 1.0, 1.0))
    back = from_grid(on_grid, grid, mask.shape, geometry, order=0)

    assert on_grid.dtype == np.uint8 and set(np.unique(on_grid)) == {0, 1}
    assert on_grid.shape == (20, 20, 20) and on_grid.sum() == 4 * 10 * 5
    assert back.shape == mask.shape and (back != mask).mean() < 0.02


def test_order_must_be_nearest_or_linear() -> None:
    with pytest.raises(ValueError, match="order"):
        resample_axes(np.zeros((2, 2, 2)), (1, 1, 1), (2, 2, 2), order=3)
