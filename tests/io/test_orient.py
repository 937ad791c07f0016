"""to_lps: any axis order and flips of a CT come back to LUNA16's layout, xyz unchanged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from lungmonai.geometry import irc_to_xyz
from lungmonai.io.orient import from_lps, to_lps
from lungmonai.io.volume import CTVolume, Geometry


def _volume(image: sitk.Image) -> CTVolume:
    geometry = Geometry(np.array(image.GetOrigin()), np.array(image.GetSpacing()), np.reshape(image.GetDirection(), (3, 3)))
    return CTVolume(sitk.GetArrayFromImage(image), geometry, "ct.nii.gz", "ct")


HU = np.random.default_rng(0).integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
IMAGE = sitk.GetImageFromArray(HU)
IMAGE.SetSpacing((0.7, 0.8, 2.5))
IMAGE.SetOrigin((-10.0, 20.0, -300.0))


@pytest.mark.parametrize("flips", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_axis_order_and_flip_comes_back_to_the_luna16_layout(order, flips) -> None:
    stored = _volume(sitk.Flip(sitk.PermuteAxes(IMAGE, order), flips))
    back = to_lps(stored)
    np.testing.assert_array_equal(back.hu, HU)
    np.testing.assert_allclose(back.geometry.origin_xyz, IMAGE.GetOrigin())
    np.testing.assert_allclose(back.geometry.spacing_xyz, IMAGE.GetSpacing())
    np.testing.assert_allclose(back.geometry.direction, np.eye(3), atol=1e-12)
    # every voxel keeps its place in patient space
    corner = np.array(stored.hu.shape) - 1
    xyz = irc_to_xyz(corner.astype(float), stored.geometry)
    value = stored.hu[tuple(corner)]
    found = np.argwhere(np.all(np.isclose(irc_to_xyz(np.indices(HU.shape).reshape(3, -1).T.astype(float), back.geometry), xyz), axis=1))
    assert HU.reshape(-1)[found[0][0]] == value
    np.testing.assert_array_equal(from_lps(back.hu, stored.geometry), stored.hu)  # and back onto the file's grid


def test_an_already_luna16_or_too_oblique_ct_is_returned_as_is() -> None:
    plain = _volume(IMAGE)
    assert to_lps(plain) is plain
    diagonal = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, np.sqrt(2.0)]]) / np.sqrt(2.0)
    oblique = CTVolume(HU, Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), diagonal), "ct", "ct")
    assert to_lps(oblique) is oblique  # 45 degrees: no axis is nearer x than y
