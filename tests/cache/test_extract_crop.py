"""extract_crop pads at every border and corner and never shifts the crop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lungmonai.cache.crops import CacheParams, extract_crop

SHAPE = (10, 12, 14)
CROP = (4, 6, 6)
PAD = -1000


def volume() -> np.ndarray:
    """Every voxel distinct and none equal to the pad value, so a shift could not hide."""
    return (np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) + 1)


def reference_crop(hu: np.ndarray, center_irc, crop_shape, pad_value) -> np.ndarray:
    """Independent definition: pad the whole volume generously, then slice."""
    crop_shape = np.asarray(crop_shape)
    margin = int(crop_shape.max()) + int(np.abs(center_irc).max()) + max(hu.shape)
    padded = np.pad(hu, margin, constant_values=pad_value)
    start = np.asarray(center_irc) - crop_shape // 2 + margin
    return padded[tuple(slice(s, s + n) for s, n in zip(start, crop_shape))]


def test_interior_crop_is_a_plain_slice():
    hu = volume()
    crop = extract_crop(hu, (5, 6, 7), CROP, PAD)
    np.testing.assert_array_equal(crop, hu[3:7, 3:9, 4:10])
    assert crop.dtype == np.int16 and crop[2, 3, 3] == hu[5, 6, 7]


# every face (one axis at its low or high end), every corner (all three at an end)
FACES = [tuple(e if a == axis else s // 2 for a, s in enumerate(SHAPE)) for axis in range(3) for e in (0, SHAPE[axis] - 1)]
ENDS = [(0, s - 1) for s in SHAPE]
CORNERS = list(itertools.product(*ENDS))


@pytest.mark.parametrize("center", FACES + CORNERS)
def test_border_and_corner_crops_are_padded_not_shifted(center):
    hu = volume()
    crop = extract_crop(hu, center, CROP, PAD)
    np.testing.assert_array_equal(crop, reference_crop(hu, center, CROP, PAD))
    half = np.asarray(CROP) // 2
    assert crop[tuple(half)] == hu[center], "the candidate must stay at the crop centre"
    assert (crop == PAD).any()
    # the count of real voxels is exactly the overlap of the box with the volume
    start = np.asarray(center) - half
    overlap = np.prod([max(0, min(s + n, dim) - max(s, 0)) for s, n, dim in zip(start, CROP, SHAPE)])
    assert int((crop != PAD).sum()) == overlap


def test_outside_volume_is_all_padding_and_rounding_is_half_up():
    hu = volume()
    assert (extract_crop(hu, (-20, 50, 6), CROP, PAD) == PAD).all()
    np.testing.assert_array_equal(extract_crop(hu, (4.5, 5.5, 6.49), CROP, PAD), extract_crop(hu, (5, 6, 6), CROP, PAD))
    odd = extract_crop(hu, (5, 6, 7), (3, 5, 5), PAD)
    assert odd[1, 2, 2] == hu[5, 6, 7]
    with pytest.raises(ValueError, match="3D"):
        extract_crop(hu[0], (1, 1, 1), CROP, PAD)


@settings(max_examples=150, deadline=None)
@given(
    center=st.tuples(*[st.integers(-8, s + 8) for s in SHAPE]),
    crop=st.tuples(st.integers(1, 12), st.integers(1, 15), st.integers(1, 17)),
)
def test_matches_reference_everywhere(center, crop):
    hu = volume()
    np.testing.assert_array_equal(extract_crop(hu, center, crop, PAD), reference_crop(hu, center, crop, PAD))


def test_cache_params_refuse_padding_outside_the_clip_range():
    # the cache would pad with -1000 where the clipped CT (and CropCandidated) hold -900
    with pytest.raises(ValueError, match=r"pad_value -1000 lies outside hu_clip \(-900, 1000\)"):
        CacheParams((32, 48, 48), (-900, 1000), -1000)
    assert CacheParams((32, 48, 48), (-900, 1000), -900).pad_value == -900
