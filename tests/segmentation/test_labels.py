"""Label rules: the book's box rule on annotations, contour volumes, positive slice centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungmonai.io.volume import Geometry
from lungmonai.segmentation.labels import (
    box_rule_mask,
    boxed_mask,
    find_mask_file,
    positive_slice_counts,
    positive_slice_faint_share,
    positive_slices,
    read_contour_mask,
)
from tests.helpers import write_reoriented


def _sphere(shape: tuple[int, int, int], center: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def test_box_rule_recovers_a_dense_sphere_in_air() -> None:
    hu = np.full((30, 40, 40), -1000, dtype=np.int16)
    sphere = _sphere(hu.shape, (15, 20, 20), 4.5)
    hu[sphere] = 40
    mask = box_rule_mask(hu, [(15, 20, 20)])
    assert np.array_equal(mask, sphere)


def test_box_rule_keeps_only_dense_voxels_of_the_box_and_stops_at_lung() -> None:
    hu = np.full((20, 30, 30), -850, dtype=np.int16)
    hu[10, 15, 15] = 50  # a one-voxel "nodule": the box keeps its minimum radius 2
    hu[10, 15, 17] = 60  # dense voxel inside the radius-2 box
    hu[10, 15, 18] = 60  # dense voxel just outside it
    mask = box_rule_mask(hu, [(10, 15, 15)])
    assert mask.sum() == 2 and mask[10, 15, 15] and mask[10, 15, 17] and not mask[10, 15, 18]


def test_box_rule_grows_along_each_axis_independently() -> None:
    hu = np.full((20, 40, 40), -1000, dtype=np.int16)
    hu[10, 20, 10:31] = 30  # a dense bar along the column axis, 10 voxels each side
    hu[8:13, 19:22, 20] = 30  # and a small blob across it
    mask = box_rule_mask(hu, [(10, 20, 20)])
    assert mask[10, 20, 10] and mask[10, 20, 30]  # the bar is reached: radius along cols grew to 11
    assert mask[8, 20, 20] and mask[12, 20, 20] and mask[10, 19, 20]


def test_box_rule_clips_at_the_volume_edge_instead_of_wrapping() -> None:
    hu = np.full((10, 20, 20), 100, dtype=np.int16)  # dense everywhere: boxes grow to the edge
    hu[-1] = 500  # a marker slab at the far end that a negative index would reach
    mask = box_rule_mask(hu, [(0, 10, 10)], min_radius=2)
    assert mask[0:3, 10, 10].all()
    assert not mask[-1].any()


def test_centre_below_threshold_or_outside_gives_nothing() -> None:
    hu = np.full((10, 20, 20), -800, dtype=np.int16)
    assert not box_rule_mask(hu, [(5, 10, 10), (50, 0, 0)]).any()


def _write_labels(path: Path, labels: np.ndarray, geometry: Geometry) -> Path:
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetOrigin(tuple(geometry.origin_xyz))
    image.SetSpacing(tuple(geometry.spacing_xyz))
    image.SetDirection(tuple(geometry.direction.ravel()))
    sitk.WriteImage(image, str(path), True)
    return path


def test_contour_mask_reads_any_label_as_nodule_and_checks_the_grid(tmp_path: Path) -> None:
    geometry = Geometry((-100.0, -120.0, -300.0), (0.7, 0.7, 2.5))
    labels = np.zeros((12, 16, 16), dtype=np.uint8)
    labels[3, 4:6, 4:6] = 1
    labels[8, 10, 10] = 2
    path = _write_labels(tmp_path / "uid1.mhd", labels, geometry)
    assert find_mask_file(tmp_path, "uid1") == path and find_mask_file(tmp_path, "uid2") is None
    mask = read_contour_mask(path, geometry, labels.shape)
    assert np.array_equal(mask, labels > 0)
    with pytest.raises(ValueError, match="geometry"):
        read_contour_mask(path, Geometry((0.0, 0.0, 0.0), (0.7, 0.7, 2.5)), labels.shape)
    with pytest.raises(ValueError, match="shape"):
        read_contour_mask(path, geometry, (12, 16, 17))


def test_a_contour_mask_stored_flipped_like_its_ct_fits_the_cached_layout(tmp_path: Path) -> None:
    geometry = Geometry((-100.0, -120.0, -300.0), (0.7, 0.8, 2.5))
    labels = np.zeros((12, 16, 18), dtype=np.uint8)
    labels[3, 4:6, 4:9] = 1
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(tuple(geometry.origin_xyz))
    image.SetSpacing(tuple(geometry.spacing_xyz))
    path = write_reoriented(image, tmp_path / "uid1.nii.gz", (1, 2, 0), (False, True, True))
    np.testing.assert_array_equal(read_contour_mask(path, geometry, labels.shape), labels > 0)


def test_positive_slices_one_centre_per_component_and_slice() -> None:
    mask = np.zeros((10, 30, 30), dtype=bool)
    mask[2:5, 10:13, 10:13] = True  # nodule 1: slices 2..4, centroid (11, 11)
    mask[7, 20:22, 24:28] = True  # nodule 2: slice 7, centroid (20.5, 25.5) -> rounds to (20, 26)
    rows = positive_slices(mask)
    assert sorted(map(tuple, rows.tolist())) == [(2, 11, 11), (3, 11, 11), (4, 11, 11), (7, 20, 26)]
    assert positive_slices(np.zeros((3, 4, 4), dtype=bool)).shape == (0, 3)
    counts = dict(zip(map(tuple, rows.tolist()), positive_slice_counts(mask).tolist()))
    assert counts == {(2, 11, 11): 3, (3, 11, 11): 3, (4, 11, 11): 3, (7, 20, 26): 1}
    assert positive_slice_counts(np.zeros((3, 4, 4), dtype=bool)).shape == (0,)


def test_faint_share_per_window_follows_each_nodule_in_the_image() -> None:
    """Three nodules in lung at -850 HU: ground glass (-600), solid (+20), and part-solid (a
    solid core in half of its slices); each window row carries its own nodule's share, whatever
    the order of the rows and wherever the mask's box starts."""
    volume = np.full((12, 40, 40), -850.0, dtype=np.float32)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[3:5, 10:14, 10:14] = True  # ground glass
    volume[3:5, 10:14, 10:14] = -600.0
    mask[6, 20:24, 30:34] = True  # solid
    volume[6, 20:24, 30:34] = 20.0
    mask[8:10, 30:34, 5:9] = True  # part-solid: ground glass in slice 8, solid in slice 9
    volume[8, 30:34, 5:9] = -550.0
    volume[9, 30:34, 5:9] = 10.0
    rows = positive_slices(mask)
    shares = positive_slice_faint_share(boxed_mask(mask), volume)
    by_slice = {int(r[0]): s for r, s in zip(rows, shares)}
    assert by_slice == {3: 1.0, 4: 1.0, 6: 0.0, 8: 0.5, 9: 0.5}
    # dense vessels near a solid nodule do not count: only the nodule's own voxels do
    volume[6, 19, 30:34] = -700.0
    assert positive_slice_faint_share(boxed_mask(mask), volume)[list(by_slice).index(6)] == 0.0
    assert positive_slice_faint_share(boxed_mask(np.zeros_like(mask)), volume).shape == (0,)
