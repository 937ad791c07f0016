"""A CT's patient-space extent from its header, and which centres fall outside it."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lungmonai.io import read_ct
from lungmonai.io.extent import Extent, inside, read_extent
from tests.helpers import rotation


def _write(path, direction=np.eye(3)):
    image = sitk.GetImageFromArray(np.zeros((6, 8, 10), dtype=np.int16))
    image.SetOrigin((-10.0, 20.0, -300.0))
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetDirection(np.asarray(direction).ravel())
    sitk.WriteImage(image, str(path))
    return path


def test_header_extent_matches_the_read_ct(tmp_path):
    direction = rotation(0.2, -0.3, 0.4)
    for name in ("ct.mhd", "ct.nii.gz"):
        path = _write(tmp_path / name, direction)
        extent, ct = read_extent(path), read_ct(path)
        assert extent.shape_irc == ct.shape_irc and extent.geometry == ct.geometry


def test_inside_reaches_half_a_voxel_past_the_outer_centres(tmp_path):
    extent = read_extent(_write(tmp_path / "ct.mhd"))
    origin, spacing = np.array([-10.0, 20.0, -300.0]), np.array([0.7, 0.8, 2.5])
    last = origin + spacing * (np.array([10, 8, 6]) - 1)
    centres = np.array([
        origin, last, origin - spacing / 2, last + spacing / 2,  # voxel centres and outer edges: inside
        origin - spacing * 0.51, last + [0, 0, 1.3], [5000.0, 20.0, -300.0], [np.nan, 0, 0],  # outside
    ])
    assert inside(centres, extent).tolist() == [True] * 4 + [False] * 4
    assert "x -10.3..-3.4" in extent.describe()


def test_a_rotated_ct_is_judged_in_its_own_axes(tmp_path):
    direction = rotation(0.0, 0.0, np.pi / 4)
    extent = Extent((6, 8, 10), read_extent(_write(tmp_path / "ct.mhd", direction)).geometry)
    # along the CT's first axis (rotated 45 degrees), the far corner is inside; the same distance along x is not
    along_axis = np.array([-10.0, 20.0, -300.0]) + direction @ np.array([9 * 0.7, 0, 0])
    assert inside(np.stack([along_axis, [-10.0 + 9 * 0.7, 20.0, -300.0]]), extent).tolist() == [True, False]
