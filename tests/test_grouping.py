"""Segmentation output -> candidate grouping (lungmonai.grouping)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lungmonai.geometry import irc_to_xyz
from lungmonai.grouping import (
    GROUP_COLUMNS,
    ComponentCapWarning,
    erosion_iterations,
    group_segmentation,
    label_segmentation,
    mask_and_group,
    segmentation_mask,
)
from lungmonai.io.volume import Geometry

UNIT = Geometry(origin_xyz=(0.0, 0.0, 0.0), spacing_xyz=(1.0, 1.0, 1.0))


def ball(shape, center, radius):
    ii, rr, cc = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (ii - center[0]) ** 2 + (rr - center[1]) ** 2 + (cc - center[2]) ** 2 <= radius**2


def flat_hu(shape, value=0):
    return np.full(shape, value, dtype=np.int16)


def test_two_spheres_give_two_components_with_centres_and_diameters():
    shape = (40, 48, 48)
    prob = np.zeros(shape, np.float32)
    prob[ball(shape, (12, 14, 15), 5)] = 0.9
    prob[ball(shape, (27, 32, 30), 7)] = 0.8
    frame = group_segmentation(prob, flat_hu(shape), UNIT)
    assert list(frame.columns) == list(GROUP_COLUMNS)
    assert len(frame) == 2
    # Ranked by p_seg_max: the 0.9 ball first.
    np.testing.assert_allclose(frame.loc[0, ["center_i", "center_r", "center_c"]].to_numpy(float), (12, 14, 15), atol=1e-9)
    np.testing.assert_allclose(frame.loc[1, ["center_i", "center_r", "center_c"]].to_numpy(float), (27, 32, 30), atol=1e-9)
    assert frame.loc[0, "p_seg_max"] == pytest.approx(0.9) and frame.loc[0, "p_seg_mean"] == pytest.approx(0.9)
    # Eroded once: about one voxel layer thinner than the ball (diameters 10 and 14).
    assert frame.loc[0, "diameter_mm"] == pytest.approx(8.0, abs=1.0)
    assert frame.loc[1, "diameter_mm"] == pytest.approx(12.0, abs=1.0)
    assert (frame.loc[0, ["bbox_i0", "bbox_i1"]].to_numpy() == (8, 17)).all()
    # Without erosion the equivalent diameter is the ball's.
    raw = group_segmentation(prob, flat_hu(shape), UNIT, erosion_iterations=0)
    np.testing.assert_allclose(raw["diameter_mm"].to_numpy(), (10.0, 14.0), atol=0.3)
    assert (raw.loc[0, ["bbox_i0", "bbox_r0", "bbox_c0", "bbox_i1", "bbox_r1", "bbox_c1"]].to_numpy() == (7, 9, 10, 18, 20, 21)).all()
    assert raw.loc[0, "voxels"] == int(ball(shape, (12, 14, 15), 5).sum())


def test_erosion_removes_single_voxel_specks():
    shape = (20, 30, 30)
    rng = np.random.default_rng(0)
    prob = np.zeros(shape, np.float32)
    specks = rng.integers(0, (20, 30, 30), size=(40, 3))
    prob[specks[:, 0], specks[:, 1], specks[:, 2]] = 0.95
    prob[ball(shape, (10, 15, 15), 4)] = 0.7
    frame = group_segmentation(prob, flat_hu(shape), UNIT)
    assert len(frame) == 1
    assert frame.loc[0, "p_seg_max"] == pytest.approx(0.7)  # specks touching the ball were eroded too
    assert len(group_segmentation(prob, flat_hu(shape), UNIT, erosion_iterations=0, max_components=None)) > 20


def test_threshold_is_strict_and_configurable():
    shape = (12, 12, 12)
    prob = np.zeros(shape, np.float32)
    prob[2:9, 2:9, 2:9] = 0.5
    assert len(group_segmentation(prob, flat_hu(shape), UNIT)) == 0
    assert len(group_segmentation(prob, flat_hu(shape), UNIT, threshold=0.4)) == 1


def test_hu_weighting_pulls_the_centre_toward_dense_voxels():
    shape = (12, 12, 24)
    prob = np.zeros(shape, np.float32)
    prob[2:9, 2:9, 2:20] = 0.9  # eroded: cols 3..18
    hu = np.full(shape, -1000, np.int16)
    hu[:, :, 11:] = 3000  # clipped to 1000 -> weight 2001; air weighs 1
    frame = group_segmentation(prob, hu, UNIT)
    cols = np.arange(3, 19)
    weights = np.where(cols >= 11, 2001.0, 1.0)
    assert frame.loc[0, "center_c"] == pytest.approx((weights * cols).sum() / weights.sum())
    assert frame.loc[0, "center_c"] > 14.0  # geometric centre is 10.5
    assert frame.loc[0, "center_i"] == pytest.approx(5.0)


def test_cap_keeps_the_best_components_and_warns():
    shape = (10, 10, 60)
    prob = np.zeros(shape, np.float32)
    for k, p in enumerate([0.6, 0.95, 0.7, 0.9, 0.8]):
        prob[2:7, 2:7, 2 + 11 * k : 9 + 11 * k] = p
    prob[2:7, 2:7, 4] = 0.99  # a hot plane through the first (p 0.6) block: its interior survives erosion
    with pytest.warns(RuntimeWarning, match=r"dropped 3") as caught:
        frame = group_segmentation(prob, flat_hu(shape), UNIT, max_components=2)
    assert caught[0].filename == __file__  # the warning points at the caller, not into the package
    assert len(frame) == 2 and frame.attrs["components_found"] == 5  # what the cap cut stays known
    with pytest.warns(ComponentCapWarning, match=r"^scan\.mhd: group_segmentation: 5 components, kept the 2 "):
        group_segmentation(prob, flat_hu(shape), UNIT, max_components=2, source="scan.mhd")  # names its CT
    with pytest.warns(ComponentCapWarning) as caught:
        mask_and_group(prob, flat_hu(shape), UNIT, erosion_mm=0.0, max_components=2)
    assert caught[0].filename == __file__  # through mask_and_group too
    assert frame["p_seg_max"].tolist() == pytest.approx([0.99, 0.95])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = group_segmentation(prob, flat_hu(shape), UNIT, max_components=None)
    assert full["p_seg_max"].tolist() == pytest.approx([0.99, 0.95, 0.9, 0.8, 0.7])
    assert full.attrs["components_found"] == 5
    assert group_segmentation(np.zeros(shape, np.float32), flat_hu(shape), UNIT).attrs["components_found"] == 0


def test_ties_on_p_max_are_broken_by_size():
    shape = (14, 14, 40)
    prob = np.zeros(shape, np.float32)
    prob[2:7, 2:7, 2:7] = 0.8
    prob[2:12, 2:12, 15:30] = 0.8
    frame = group_segmentation(prob, flat_hu(shape), UNIT)
    assert frame["voxels"].tolist() == sorted(frame["voxels"].tolist(), reverse=True)


def test_non_unit_spacing_origin_and_direction_give_patient_xyz():
    shape = (30, 40, 50)
    prob = np.zeros(shape, np.float32)
    prob[ball(shape, (10, 20, 30), 4)] = 0.9
    direction = np.diag([1.0, -1.0, 1.0])
    geometry = Geometry(origin_xyz=(-150.0, 120.0, -300.0), spacing_xyz=(0.7, 0.8, 2.5), direction=direction)
    frame = group_segmentation(prob, flat_hu(shape), geometry)
    expected = np.array([-150.0 + 30 * 0.7, 120.0 - 20 * 0.8, -300.0 + 10 * 2.5])
    np.testing.assert_allclose(frame.loc[0, ["center_x", "center_y", "center_z"]].to_numpy(float), expected, atol=1e-9)
    np.testing.assert_allclose(
        frame.loc[0, ["center_x", "center_y", "center_z"]].to_numpy(float),
        irc_to_xyz(frame.loc[0, ["center_i", "center_r", "center_c"]].to_numpy(float), geometry),
    )
    voxel_mm3 = 0.7 * 0.8 * 2.5
    assert frame.loc[0, "volume_mm3"] == pytest.approx(frame.loc[0, "voxels"] * voxel_mm3)
    assert frame.loc[0, "diameter_mm"] == pytest.approx((6 * frame.loc[0, "volume_mm3"] / np.pi) ** (1 / 3))


def test_empty_mask_gives_empty_frame_with_columns():
    shape = (8, 8, 8)
    frame = group_segmentation(np.zeros(shape, np.float32), flat_hu(shape), UNIT)
    assert frame.empty and list(frame.columns) == list(GROUP_COLUMNS)
    assert frame["voxels"].dtype == np.int64 and frame["center_x"].dtype == np.float64
    empty_nd = group_segmentation(np.zeros(shape, np.float32), flat_hu(shape), UNIT, method="ndimage")
    pd.testing.assert_frame_equal(frame, empty_nd)


def test_connectivity_choice():
    shape = (10, 10, 10)
    mask = np.zeros(shape, bool)
    mask[1:4, 1:4, 1:4] = True
    mask[4:7, 4:7, 4:7] = True  # touches the first cube at one corner only
    assert len(group_segmentation(None, flat_hu(shape), UNIT, mask=mask, connectivity=1)) == 2
    assert len(group_segmentation(None, flat_hu(shape), UNIT, mask=mask, connectivity=2)) == 2
    assert len(group_segmentation(None, flat_hu(shape), UNIT, mask=mask, connectivity=3)) == 1
    frame = group_segmentation(None, flat_hu(shape), UNIT, mask=mask)
    assert frame["p_seg_max"].isna().all()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_sparse_path_equals_scipy_ndimage(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(8):
        shape = tuple(int(s) for s in rng.integers(4, 24, 3))
        prob = ndimage.gaussian_filter(rng.random(shape), 1.0)
        prob = (prob - prob.min()) / (np.ptp(prob) + 1e-12)
        threshold = float(rng.uniform(0.35, 0.65))
        hu = rng.integers(-1200, 1500, size=shape).astype(np.int16)
        for iterations in (0, 1, 2):
            reference = ndimage.binary_erosion(prob > threshold, iterations=iterations) if iterations else prob > threshold
            mask = segmentation_mask(prob, threshold=threshold, erosion_iterations=iterations, method="sparse")
            assert np.array_equal(mask, reference)
            labels, n = label_segmentation(
                prob, threshold=threshold, erosion_iterations=iterations, connectivity=connectivity, method="sparse"
            )
            ref_labels, ref_n = ndimage.label(reference, structure=ndimage.generate_binary_structure(3, connectivity))
            assert n == ref_n and np.array_equal(labels, ref_labels)
            kwargs = dict(threshold=threshold, erosion_iterations=iterations, connectivity=connectivity, max_components=None)
            sparse = group_segmentation(prob, hu, UNIT, method="sparse", **kwargs)
            dense = group_segmentation(prob, hu, UNIT, method="ndimage", **kwargs)
            pd.testing.assert_frame_equal(sparse, dense)
            if n:
                com = ndimage.center_of_mass(np.clip(hu, -1000, 1000) + 1001.0, ref_labels, sparse["label"].to_numpy())
                np.testing.assert_allclose(sparse[["center_i", "center_r", "center_c"]].to_numpy(), np.asarray(com), atol=1e-9)
                maxima = ndimage.maximum(prob, ref_labels, sparse["label"].to_numpy())
                np.testing.assert_allclose(sparse["p_seg_max"].to_numpy(), maxima)


def test_auto_method_switches_to_ndimage_for_a_dense_foreground_with_the_same_result():
    shape = (16, 20, 20)
    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter(rng.random(shape), 1.0)
    prob = (prob - prob.min()) / np.ptp(prob)  # about half the volume above 0.5: far above AUTO_SPARSE_FRACTION
    hu = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    auto = group_segmentation(prob, hu, UNIT, max_components=None)
    pd.testing.assert_frame_equal(auto, group_segmentation(prob, hu, UNIT, max_components=None, method="sparse"))
    assert np.array_equal(segmentation_mask(prob), segmentation_mask(prob, method="sparse"))
    assert np.array_equal(label_segmentation(prob)[0], label_segmentation(prob, method="sparse")[0])


def test_mask_and_labels_round_trip():
    shape = (20, 24, 24)
    prob = np.zeros(shape, np.float32)
    prob[ball(shape, (6, 6, 6), 3)] = 0.9
    prob[ball(shape, (13, 16, 16), 4)] = 0.6
    mask = segmentation_mask(prob)
    via_mask = group_segmentation(prob, flat_hu(shape), UNIT, mask=mask)
    direct = group_segmentation(prob, flat_hu(shape), UNIT)
    pd.testing.assert_frame_equal(via_mask, direct)
    labels, n = label_segmentation(prob)
    assert n == 2
    for row in direct.itertuples():
        assert (labels == row.label).sum() == row.voxels


def test_bad_inputs_are_refused():
    shape = (6, 6, 6)
    with pytest.raises(ValueError, match="hu shape"):
        group_segmentation(np.zeros(shape), np.zeros((6, 6, 5), np.int16), UNIT)
    with pytest.raises(ValueError, match="connectivity"):
        group_segmentation(np.zeros(shape), flat_hu(shape), UNIT, connectivity=4)
    with pytest.raises(ValueError, match="3D"):
        segmentation_mask(np.zeros((6, 6)))


def test_erosion_is_set_in_millimetres_and_follows_the_pixel_size():
    # The book's one iteration on LUNA16's usual 0.6-1.0 mm pixels ...
    for pixel in (0.6, 0.7, 0.8, 0.98):
        assert erosion_iterations(np.array([pixel, pixel, 2.5]), 0.7) == 1
    # ... none on coarse 1.5 mm pixels, where one voxel would erase a 3 mm nodule ...
    assert erosion_iterations(np.array([1.5, 1.5, 1.5]), 0.7) == 0
    # ... and two on very fine ones, so the physical erosion stays about the same.
    assert erosion_iterations(np.array([0.45, 0.45, 1.0]), 0.7) == 2
    assert erosion_iterations(np.array([0.7, 0.7, 1.0]), 0.0) == 0
    with pytest.raises(ValueError, match="erosion_mm"):
        erosion_iterations(np.array([0.7, 0.7, 1.0]), -1.0)
