"""Nodule label volumes: the LUNA book's box rule on annotations, or radiologists' contours.

Real LUNA16 gives only a centre and a diameter per nodule, so the book grows a box from the
centre along each axis while the CT stays denser than lung (-700 HU) and keeps the dense
voxels inside it. The embedded dataset also ships the contours its nodules were drawn from
(``masks/<uid>.mhd``, label k = nodule k), which are the better truth when they exist.
Both give a boolean (index, row, col) volume on the CT's own grid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.io.errors import CTReadError
from lungmonai.io.grid import array_to_grid
from lungmonai.io.metaimage import read_metaimage
from lungmonai.io.orient import array_to_lps
from lungmonai.io.volume import Geometry

# Below -300 HU a nodule voxel is faint: ground glass (hazy attenuation that leaves vessels
# visible; -660 to -480 HU in the generator), or the partial-volume rim of a small solid nodule.
# Solid tissue and the core of a part-solid nodule are near 0 HU (5 to 45 HU in the generator).
FAINT_HU = -300.0
DEFAULT_THRESHOLD_HU = -700
DEFAULT_MIN_RADIUS = 2
MASK_SUFFIXES = (".mhd", ".mha", ".nii.gz", ".nii")


def _grow_radius(hu: np.ndarray, center: np.ndarray, axis: int, threshold_hu: float, min_radius: int) -> int:
    """Largest r >= min_radius such that the voxels r before and after the centre along ``axis``
    are still above the threshold when r - 1 was (the book's loop); stops at the volume's edge."""
    radius = min_radius
    size = hu.shape[axis]
    while True:
        lo, hi = center.copy(), center.copy()
        lo[axis] -= radius
        hi[axis] += radius
        if lo[axis] < 0 or hi[axis] >= size:
            return radius
        if not (hu[tuple(lo)] > threshold_hu and hu[tuple(hi)] > threshold_hu):
            return radius
        radius += 1


def box_rule_mask(
    hu: np.ndarray,
    centers_irc: Sequence[Sequence[int]] | np.ndarray,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    min_radius: int = DEFAULT_MIN_RADIUS,
) -> np.ndarray:
    """The book's annotation mask: per centre, a box grown along each axis while HU > threshold
    (radius at least ``min_radius``), then only voxels > threshold inside the union of boxes.

    Unlike the book's loop, a box reaching the volume's edge is clipped instead of wrapping to
    the other end through negative indices. Centres outside the volume are skipped.
    """
    hu = np.asarray(hu)
    boxes = np.zeros(hu.shape, dtype=bool)
    shape = np.asarray(hu.shape)
    for center in np.asarray(centers_irc, dtype=np.int64).reshape(-1, 3):
        if np.any(center < 0) or np.any(center >= shape):
            continue
        radii = [_grow_radius(hu, center, axis, threshold_hu, min_radius) for axis in range(3)]
        lo = np.maximum(center - radii, 0)
        hi = np.minimum(center + radii + 1, shape)
        boxes[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return boxes & (hu > threshold_hu)


def find_mask_file(masks_dir: str | os.PathLike[str], series_uid: str) -> Path | None:
    """``masks_dir/<uid>.mhd`` (or .mha/.nii.gz/.nii), or None when the series has no contours."""
    for suffix in MASK_SUFFIXES:
        path = Path(masks_dir) / f"{series_uid}{suffix}"
        if path.is_file():
            return path
    return None


def _read_label_file(path: Path) -> tuple[np.ndarray, Geometry]:
    """The label array (I, R, C) and its geometry. MetaImage goes through the project's own reader,
    which keeps its data file inside the mask's folder; other formats through SimpleITK, imported
    only here so that training on the embedded dataset does not need it."""
    if path.suffix.lower() == ".mhd":
        try:
            volume = read_metaimage(path)
        except CTReadError as error:
            raise ValueError(f"{path}: cannot read label volume: {error.problem}") from error
        return volume.hu, volume.geometry
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ValueError(f"{path}: cannot read label volume: {str(error).strip().splitlines()[-1]}") from error
    return sitk.GetArrayFromImage(image), Geometry(image.GetOrigin(), image.GetSpacing(), image.GetDirection())


def read_contour_mask(path: str | os.PathLike[str], geometry: Geometry, shape_irc: Sequence[int]) -> np.ndarray:
    """Boolean nodule mask from a label volume (0 = background, k > 0 = nodule k).

    The labels must sit on the CT's grid: a mask with another shape or geometry would put
    nodules in the wrong place without any visible error, so it is refused. Both are compared
    in LUNA16's layout (``io.orient``) and on the working grid (``io.grid``), the ones
    ``geometry`` and ``shape_irc`` come from the cache in, so a mask stored like its CT
    (flipped, sagittal, at the CT's own spacing) fits that CT's cached volume.
    """
    path = Path(path)
    labels, mask_geometry = array_to_lps(*_read_label_file(path))
    # The cached CT is on the working grid: the labels follow it, nearest neighbour (they stay labels).
    labels, mask_geometry = array_to_grid(np.asarray(labels), mask_geometry, geometry.spacing_xyz, order=0)
    if tuple(labels.shape) != tuple(int(s) for s in shape_irc):
        raise ValueError(f"{path}: label volume has shape {labels.shape}, the CT has {tuple(shape_irc)}")
    if mask_geometry != geometry:
        raise ValueError(
            f"{path}: label geometry (origin {mask_geometry.origin_xyz.tolist()}, spacing "
            f"{mask_geometry.spacing_xyz.tolist()}) differs from the CT's (origin {geometry.origin_xyz.tolist()}, "
            f"spacing {geometry.spacing_xyz.tolist()})"
        )
    return np.asarray(labels) > 0


@dataclass(frozen=True)
class BoxedMask:
    """A label mask stored as its bounding box: ``box`` sits at ``origin`` (slice, row, col) in a
    volume of ``shape``, zero elsewhere. ``np.asarray`` gives the whole (I, R, C) mask."""

    shape: tuple[int, int, int]
    origin: tuple[int, int, int]
    box: np.ndarray

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.box.dtype if dtype is None else dtype)
        dense[tuple(slice(o, o + n) for o, n in zip(self.origin, self.box.shape))] = self.box
        return dense


def boxed_mask(mask: np.ndarray) -> BoxedMask:
    """``mask`` (I, R, C) cut down to the bounding box of its non-zero voxels (an empty box at
    the origin when there are none)."""
    mask = np.asarray(mask)
    if not mask.any():
        return BoxedMask(tuple(int(s) for s in mask.shape), (0, 0, 0), np.zeros((0, 0, 0), dtype=mask.dtype))
    bounds = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds.append((int(hit[0]), int(hit[-1]) + 1))
    box = mask[tuple(slice(lo, hi) for lo, hi in bounds)]
    return BoxedMask(tuple(int(s) for s in mask.shape), tuple(lo for lo, _ in bounds), np.array(box))


def positive_slices(mask: np.ndarray) -> np.ndarray:
    """``(N, 3)`` int32 rows ``(slice, row, col)``: one per nodule component per slice it
    crosses, at the component's centroid in that slice (where training windows are centred)."""
    return _positive_rows(mask)[0]


def positive_slice_counts(mask: np.ndarray) -> np.ndarray:
    """For each row of :func:`positive_slices` (same order), how many slices its component
    crosses: a 4 mm nodule crosses 2 slices of the 2 mm grid, a 25 mm one 12, so slices drawn
    alike show the network six times more of a large nodule than of a small one."""
    rows, components = _positive_rows(mask)
    per_component = np.bincount(components) if len(components) else np.zeros(0, dtype=np.int64)
    return per_component[components].astype(np.int64)


def positive_slice_faint_share(mask: BoxedMask, volume: np.ndarray, threshold_hu: float = FAINT_HU) -> np.ndarray:
    """For each row of :func:`positive_slices` (same order), the share of its component's voxels
    in ``volume`` (HU, the mask's grid) below ``threshold_hu``: how faint the nodule looks on
    this grid. 1 for ground glass, near 0 for a large solid nodule; a small solid nodule is
    mostly partial-volume rim, so it counts as faint too. On the 71 training series of the 1 mm
    development set, 29 of 142 nodule components are over half faint, 18 of them under 50
    voxels. Measured on the image, so it works on any dataset, without the readers' texture
    rating.

    Read from the mask's bounding box only: components of the box come in the same order as
    those of the whole mask (both are labelled in raster order)."""
    from scipy import ndimage

    box = np.asarray(mask.box)
    labelled, count = ndimage.label(box)
    _, owner = _labelled_rows(labelled, count)
    if not len(owner):
        return np.zeros(0, dtype=np.float64)
    hu = np.asarray(volume[tuple(slice(o, o + n) for o, n in zip(mask.origin, box.shape))])
    shares = np.asarray(ndimage.mean(hu < threshold_hu, labels=labelled, index=np.arange(1, count + 1)), dtype=np.float64)
    return shares[owner - 1]


def _positive_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    return _labelled_rows(*ndimage.label(mask))


def _labelled_rows(components: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :func:`positive_slices` and the label (1..count) of each row's component."""
    from scipy import ndimage

    if count == 0:
        return np.zeros((0, 3), dtype=np.int32), np.zeros(0, dtype=np.int64)
    rows: list[tuple[int, int, int]] = []
    owner: list[int] = []
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        sub = components[box] == label
        for k in range(sub.shape[0]):
            rr, cc = np.nonzero(sub[k])
            if rr.size:
                rows.append(
                    (box[0].start + k, box[1].start + int(round(rr.mean())), box[2].start + int(round(cc.mean())))
                )
                owner.append(label)
    return np.asarray(rows, dtype=np.int32).reshape(-1, 3), np.asarray(owner, dtype=np.int64)
