"""Nodule sizes measured on voxelised spheres and ellipsoids of known size.

Errors these tests measure (measured - true; 8 random sub-voxel placements of each shape:
spheres of 4, 6, 10, 20 and 30 mm, ellipsoids of 16 x 12 x 8 mm upright and turned 29 degrees
in plane, and 10 x 8 x 5 mm turned 57 degrees):

================  ===================  ===================  ====================
spacing (mm)      long axis            short axis           volume, >= 6 mm
================  ===================  ===================  ====================
0.6 isotropic     +0.01 .. +0.54 mm    -0.36 .. +0.48 mm    -0.9 .. +2.2 %
0.7 x 0.7 x 1.25  -0.25 .. +0.62 mm    -0.45 .. +0.57 mm    -2.0 .. +2.9 %
1.5 x 1.5 x 2.0   -0.65 .. +1.32 mm    -1.36 .. +1.28 mm    -4.9 .. +7.4 %
================  ===================  ===================  ====================

Every axis is within one in-plane pixel of the truth. The long axis reads 0.36-0.45 mm long
on average: it is the largest of many diameters of a jagged edge. The volume error is the
voxelisation's: a 6 mm sphere is 25 voxels of 4.5 mm³ at 1.5 x 1.5 x 2.0 mm, and which of
its surface voxels count moves with its position; over other placements than these its
volume was off by up to +15 %, so the test allows that one 16 %. ``bench/bench_reports.py``
prints these errors per phantom, with the mean diameter's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.pipeline.analysis import Analysis, PipelineSettings
from lungmonai.pipeline.report import nodule_records
from lungmonai.reports.measure import nodule_size, round_tenth
from tests.helpers import ellipsoid_mask

SPACINGS_IRC = [(0.6, 0.6, 0.6), (1.25, 0.7, 0.7), (2.0, 1.5, 1.5)]
PLACEMENTS = 8


# (semi-axes x, y, z in mm, angle in plane): long axis 2 x, short axis 2 y
SHAPES = [((r, r, r), 0.0) for r in (2.0, 3.0, 5.0, 10.0, 15.0)] + [
    ((8.0, 6.0, 4.0), 0.0), ((8.0, 6.0, 4.0), 0.5), ((5.0, 4.0, 2.5), 1.0)]


@pytest.mark.parametrize("spacing_irc", SPACINGS_IRC, ids=lambda s: "x".join(map(str, s)))
def test_axes_within_one_pixel_and_volume_within_ten_percent(spacing_irc) -> None:
    rng = np.random.default_rng(7)
    pixel = spacing_irc[1]
    errors = []
    for (semi, angle) in SHAPES:
        volume = 4 / 3 * np.pi * np.prod(semi)
        for _ in range(PLACEMENTS):
            size = nodule_size(ellipsoid_mask(semi, spacing_irc, rng.uniform(-0.5, 0.5, 3), angle), spacing_irc)
            errors.append({
                "semi": semi, "long": size["long_axis_mm"] - 2 * semi[0],
                "short": size["short_axis_mm"] - 2 * semi[1], "volume": size["volume_mm3"] / volume - 1,
                "mean_is_rounded": size["mean_diameter_mm"] == round_tenth((size["long_axis_mm"] + size["short_axis_mm"]) / 2),
            })
    table = pd.DataFrame(errors)
    summary = (f"{spacing_irc}: long {table['long'].min():+.2f}..{table['long'].max():+.2f} mm, short "
               f"{table['short'].min():+.2f}..{table['short'].max():+.2f} mm, volume "
               f"{100 * table['volume'].min():+.1f}..{100 * table['volume'].max():+.1f} %")
    assert table["long"].abs().max() <= pixel and table["short"].abs().max() <= pixel, summary
    assert table["mean_is_rounded"].all()
    # >= 6 mm: within 10 %, except a 6 mm sphere at 1.5 x 1.5 x 2.0 mm, 25 voxels (module docstring)
    smallest = 3.0 if pixel < 1.0 else 4.0
    big = table[[min(s) >= smallest for s in table["semi"]]]
    assert big["volume"].abs().max() <= 0.10, summary
    if pixel >= 1.0:
        six = table[[s == (3.0, 3.0, 3.0) for s in table["semi"]]]
        assert six["volume"].abs().max() <= 0.16, summary


def test_the_axes_are_taken_on_the_slice_of_greatest_area() -> None:
    # A 4 x 12 mm bar on one slice over a 7 x 7 mm square on three: the square's slices have
    # one voxel more, so the bar's 12 mm long axis is not the nodule's.
    mask = np.zeros((6, 20, 20), bool)
    mask[1, 8:12, 4:16] = True  # 48 voxels
    mask[2:5, 7:14, 7:14] = True  # 49 voxels each
    size = nodule_size(mask, (1.0, 1.0, 1.0))
    # The square's diagonal, edge to edge on the outline, which cuts each pixel corner by half a pixel
    assert size["long_axis_mm"] == pytest.approx(np.hypot(7, 6), abs=0.01)
    assert size["short_axis_mm"] == pytest.approx(np.hypot(7, 6), abs=0.05)  # the other diagonal
    assert size["volume_mm3"] == 48 + 3 * 49


def test_short_axis_is_a_chord_perpendicular_to_the_long_axis() -> None:
    # An L of 2 mm arms, 10 mm each: the long axis runs from one arm's end to the other's. Every
    # line perpendicular to it crosses one arm or the corner, about 2 sqrt(2) mm of nodule; the
    # L's width across the long axis (its corner's distance from it, about 7 mm) is not a chord.
    mask = np.zeros((1, 14, 14), bool)
    mask[0, 2:12, 2:4] = True
    mask[0, 10:12, 2:12] = True
    size = nodule_size(mask, (1.0, 1.0, 1.0))
    assert size["long_axis_mm"] == pytest.approx(np.hypot(9.5, 9.5), abs=0.05)
    assert size["short_axis_mm"] == pytest.approx(2 * np.sqrt(2), abs=0.2)


def test_an_empty_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        nodule_size(np.zeros((3, 4, 4), bool), (1.0, 1.0, 1.0))


def test_round_tenth_rounds_halves_up() -> None:
    assert round_tenth(5.95) == 6.0 and round_tenth(5.94) == 5.9 and round_tenth(0.05) == 0.1


def test_report_measures_the_segmented_nodule_not_the_eroded_component() -> None:
    # The analysis mask is eroded once at 0.7 mm pixels: measured as is, a 10 mm nodule would
    # read about 1.4 mm short. The report dilates its component back before measuring.
    spacing_irc = (1.25, 0.7, 0.7)
    ball = ellipsoid_mask((5.0, 5.0, 5.0), spacing_irc, (0.2, -0.3, 0.1))
    shape = (30, 40, 40)
    segmented = np.zeros(shape, bool)
    segmented[3:3 + ball.shape[0], 5:5 + ball.shape[1], 6:6 + ball.shape[2]] = ball
    eroded = ndimage.binary_erosion(segmented)
    other = np.zeros(shape, bool)
    other[8:11, 29:32, 29:32] = True  # another component in the nodule's neighbourhood
    center = np.argwhere(eroded).mean(axis=0)
    ct = CTVolume(np.full(shape, -800, np.int16), Geometry((0.0, 0.0, 0.0), spacing_irc[::-1]), Path("ct.mhd"), "ct")
    candidates = pd.DataFrame({
        "center_x": [center[2] * 0.7, 8 * 0.7], "center_y": [center[1] * 0.7, 8 * 0.7],
        "center_z": [center[0] * 1.25, 26 * 1.25], "center_i": [center[0], 26.0], "center_r": [center[1], 8.0],
        "center_c": [center[2], 8.0], "p_nodule": [0.9, 0.8], "p_malignant": [0.3, 0.2], "voxels": 5, "diameter_mm": 4.0,
    })
    analysis = Analysis(ct=ct, candidates=candidates, mask=eroded | other)
    first, second = nodule_records(analysis, PipelineSettings(nodule_threshold=0.5, erosion_mm=0.7))
    truth, eroded_size = nodule_size(segmented, spacing_irc), nodule_size(eroded, spacing_irc)
    for axis in ("long_axis_mm", "short_axis_mm", "mean_diameter_mm"):
        assert first[axis] == round(truth[axis], 1) and abs(first[axis] - 10.0) <= 0.7
        assert eroded_size[axis] < truth[axis] - 1.0
    # Erosion then dilation gives back all but the voxels where the cross does not fit: -1.3 % here
    assert first["volume_mm3"] == pytest.approx(truth["volume_mm3"], rel=0.02)
    assert eroded_size["volume_mm3"] < 0.8 * truth["volume_mm3"]
    assert second["long_axis_mm"] is None and second["volume_mm3"] is None  # no component within 10 mm of it
