"""xyz <-> irc must agree with SimpleITK on any invertible direction, not just rotations.

Directions are drawn as rotation @ upper-triangular (random scales, signs and shears), so they
are neither symmetric nor orthogonal but stay well conditioned; a solver that multiplies by
``D.T`` or applies ``inv(D)`` on the wrong side fails here while passing on identity/rotations.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lungmonai.geometry import irc_to_xyz, xyz_to_irc, xyz_to_irc_continuous
from lungmonai.io.volume import Geometry

from tests.helpers import rotation

SETTINGS = settings(max_examples=200, deadline=None)
finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def geometries(draw) -> Geometry:
    # Angles and shears on a fine grid (0.05 degree, 0.001): a scanner's direction cosines are
    # never subnormal, and SimpleITK's matrix inverse turns 1e-300-sized entries into NaN.
    angles = draw(st.tuples(*[st.integers(-3600, 3600).map(lambda k: k * np.pi / 3600)] * 3))
    scales = draw(st.tuples(*[st.floats(0.5, 2.0, **finite)] * 3))
    signs = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
    shears = draw(st.tuples(*[st.integers(-500, 500).map(lambda k: k / 1000)] * 3))
    upper = np.diag(np.multiply(scales, signs))
    upper[0, 1], upper[0, 2], upper[1, 2] = shears
    direction = rotation(*angles) @ upper
    spacing = draw(st.tuples(*[st.floats(0.2, 5.0, **finite)] * 3))
    origin = draw(st.tuples(*[st.floats(-500.0, 500.0, **finite)] * 3))
    return Geometry(origin, spacing, direction)


def sitk_image(geometry: Geometry) -> sitk.Image:
    image = sitk.Image([2, 2, 2], sitk.sitkUInt8)
    image.SetOrigin(geometry.origin_xyz.tolist())
    image.SetSpacing(geometry.spacing_xyz.tolist())
    image.SetDirection(geometry.direction.ravel().tolist())
    return image


points_xyz = arrays(np.float64, (5, 3), elements=st.floats(-400.0, 400.0, **finite))
points_irc = arrays(np.float64, (5, 3), elements=st.floats(-300.0, 300.0, **finite))


@SETTINGS
@given(geometries(), points_xyz)
def test_xyz_to_irc_continuous_matches_sitk(geometry: Geometry, xyz: np.ndarray) -> None:
    image = sitk_image(geometry)
    expected = [image.TransformPhysicalPointToContinuousIndex(p.tolist())[::-1] for p in xyz]
    np.testing.assert_allclose(xyz_to_irc_continuous(xyz, geometry), expected, rtol=1e-9, atol=1e-7)


@SETTINGS
@given(geometries(), points_xyz)
def test_xyz_to_irc_matches_sitk_rounding(geometry: Geometry, xyz: np.ndarray) -> None:
    continuous = xyz_to_irc_continuous(xyz, geometry)
    # Exactly-half indices round by floating-point noise in either implementation: skip those.
    assume(np.all(np.abs(np.abs(continuous - np.floor(continuous)) - 0.5) > 1e-6))
    image = sitk_image(geometry)
    expected = [image.TransformPhysicalPointToIndex(p.tolist())[::-1] for p in xyz]
    result = xyz_to_irc(xyz, geometry)
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, expected)


@SETTINGS
@given(geometries(), points_irc)
def test_irc_to_xyz_matches_sitk(geometry: Geometry, irc: np.ndarray) -> None:
    image = sitk_image(geometry)
    expected = [image.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in irc]
    np.testing.assert_allclose(irc_to_xyz(irc, geometry), expected, rtol=1e-12, atol=1e-8)


@SETTINGS
@given(geometries(), points_xyz)
def test_round_trip_xyz_irc_xyz(geometry: Geometry, xyz: np.ndarray) -> None:
    back = irc_to_xyz(xyz_to_irc_continuous(xyz, geometry), geometry)
    np.testing.assert_allclose(back, xyz, rtol=1e-10, atol=1e-8)


@SETTINGS
@given(geometries(), points_xyz, points_irc)
def test_vectorised_equals_per_point(geometry: Geometry, xyz: np.ndarray, irc: np.ndarray) -> None:
    # LAPACK solves one and many right-hand sides by different paths: equal up to an ulp or so.
    continuous = xyz_to_irc_continuous(xyz, geometry)
    np.testing.assert_allclose(
        continuous, [xyz_to_irc_continuous(p, geometry) for p in xyz], rtol=1e-13, atol=1e-12
    )
    np.testing.assert_allclose(
        irc_to_xyz(irc, geometry), [irc_to_xyz(p, geometry) for p in irc], rtol=1e-13, atol=1e-12
    )
    assume(np.all(np.abs(np.abs(continuous - np.floor(continuous)) - 0.5) > 1e-9))
    np.testing.assert_array_equal(xyz_to_irc(xyz, geometry), [xyz_to_irc(p, geometry) for p in xyz])
    assert xyz_to_irc(xyz[0], geometry).shape == (3,)
    assert irc_to_xyz(irc.reshape(1, 5, 3), geometry).shape == (1, 5, 3)
    assert xyz_to_irc_continuous(xyz.reshape(5, 1, 3), geometry).shape == (5, 1, 3)


def test_half_index_rounds_up_like_itk() -> None:
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    xyz = np.array([[0.5, 1.5, -0.5], [2.5, -1.5, 0.49]])
    image = sitk_image(geometry)
    expected = [image.TransformPhysicalPointToIndex(p.tolist())[::-1] for p in xyz]
    np.testing.assert_array_equal(xyz_to_irc(xyz, geometry), expected)
    np.testing.assert_array_equal(xyz_to_irc(xyz, geometry), [[0, 2, 1], [0, -1, 3]])


def test_non_symmetric_direction_example() -> None:
    # A hand-checkable case: D maps index x to (1, 1, 0) mm, so transposing D would break it.
    geometry = Geometry((10.0, 20.0, 30.0), (1.0, 1.0, 1.0), [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(irc_to_xyz([0, 0, 1], geometry), [11.0, 21.0, 30.0])
    np.testing.assert_allclose(xyz_to_irc_continuous([11.0, 21.0, 30.0], geometry), [0, 0, 1])


def test_voxel_boundary_points_round_like_sitk_on_luna16_geometry() -> None:
    # Points built from half-integer indices sit on voxel boundaries; the last bit of the
    # arithmetic decides their voxel, so it must be ITK's (one inverse matrix, then a product).
    geometry = Geometry((69.117, 164.324, 66.087), (0.6640625, 0.6640625, 0.625))
    image = sitk_image(geometry)
    rng = np.random.default_rng(1)
    xyz = irc_to_xyz(rng.integers(0, 500, size=(2000, 3)) + 0.5, geometry)
    expected = [image.TransformPhysicalPointToIndex(p.tolist())[::-1] for p in xyz]
    np.testing.assert_array_equal(xyz_to_irc(xyz, geometry), expected)
