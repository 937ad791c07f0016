"""A nodule's density features, from its voxels on the working grid.

The same function measures them for training (the dataset's contour of the nodule, put on
the working grid) and in the pipeline (the nodule's segmentation component, on the grid the
analysis already holds), so the model sees one definition of every number.

What separates the three types is how much of the nodule is solid tissue and where:

- solid: soft tissue throughout (about 0 HU; partial volume lowers the outermost voxels);
- ground-glass: hazy, -700 to -450 HU, no solid part;
- part-solid: a solid core inside a ground-glass rim.

So the features are the fraction of voxels above -300 HU (the usual solid / ground-glass
cut), the mean and the 10th and 90th percentiles of HU, and the mean HU of the core (voxels
at least half the nodule's depth in from its outline, in mm) and of the rim (the rest), which
tells a solid core in a hazy rim from a nodule solid throughout. Calcification is the fraction
of voxels above 200 HU (bone-like density; soft tissue stays below ~100 HU). The volume's
logarithm comes last: small nodules are mostly edge voxels, which partial volume darkens, and
the model needs it to read the other numbers of a 4 mm nodule differently from a 20 mm one.

HU are clipped to [-1000, 1000] first (the classifier's window), so a streak or a metal voxel
cannot move a mean by more than that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

FEATURES: tuple[str, ...] = (
    "solid_fraction",
    "mean_hu",
    "p10_hu",
    "p90_hu",
    "core_mean_hu",
    "rim_mean_hu",
    "calcific_fraction",
    "log10_volume_mm3",
)
"""Names of :func:`nodule_features`' values, in order (a model file names the ones it was fitted on)."""

SOLID_HU = -300.0
"""Above this a voxel counts as solid tissue (ground glass stays below it)."""

CALCIFIC_HU = 200.0
"""Above this a voxel counts as calcified."""

CORE_DEPTH = 0.5
"""The core: voxels at least this fraction of the nodule's greatest depth (mm) in from its outline."""

HU_CLIP = (-1000.0, 1000.0)


def _check(hu: np.ndarray, mask: np.ndarray, spacing_irc: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hu = np.asarray(hu)
    mask = np.asarray(mask)
    spacing = np.asarray(spacing_irc, dtype=np.float64).reshape(-1)
    if hu.ndim != 3:
        raise ValueError(f"hu must be a 3D (index, row, col) array, got shape {hu.shape}")
    if mask.shape != hu.shape:
        raise ValueError(f"component mask has shape {mask.shape}, the HU array {hu.shape}: they must cover the same voxels")
    if mask.dtype != bool:
        raise TypeError(f"component mask must be boolean, got {mask.dtype}")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or not np.all(spacing > 0):
        raise ValueError(f"spacing_irc must be three positive voxel sizes in mm (index, row, col), got {spacing_irc!r}")
    if not mask.any():
        raise ValueError("the component mask is empty: no nodule voxels to measure")
    values = hu[mask].astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("HU inside the component must be finite")
    return values, mask, spacing


def core_mask(mask: np.ndarray, spacing_irc: Sequence[float]) -> np.ndarray:
    """Voxels of ``mask`` at least :data:`CORE_DEPTH` of its greatest depth in from the outline
    (depth: distance in mm to the nearest voxel outside, the volume's border counting as outside)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=np.asarray(spacing_irc, np.float64))[1:-1, 1:-1, 1:-1]
    return mask & (depth >= CORE_DEPTH * float(depth.max()))


def nodule_features(hu: np.ndarray, component_mask: np.ndarray, spacing_irc: Sequence[float]) -> np.ndarray:
    """The :data:`FEATURES` of one nodule (float64, in that order).

    ``hu``: HU on the working grid, any array covering the component (a crop or the whole CT);
    ``component_mask``: bool, same shape, True on the nodule's voxels; ``spacing_irc``: voxel
    size in mm (index, row, col). A nodule without rim voxels (one or two voxels deep) takes
    its core's mean for the rim.
    """
    values, mask, spacing = _check(hu, component_mask, spacing_irc)
    # Measure inside the component's bounding box: the distance transform then costs the
    # nodule's size, not the CT's.
    box = ndimage.find_objects(mask.astype(np.int8))[0]
    sub_mask = mask[box]
    sub_hu = np.clip(np.asarray(hu[box], dtype=np.float64), *HU_CLIP)
    values = np.clip(values, *HU_CLIP)
    core = core_mask(sub_mask, spacing)
    rim = sub_mask & ~core
    core_mean = float(sub_hu[core].mean())
    rim_mean = float(sub_hu[rim].mean()) if rim.any() else core_mean
    volume = float(mask.sum()) * float(np.prod(spacing))
    p10, p90 = np.percentile(values, [10.0, 90.0])
    return np.array([
        float(np.mean(values > SOLID_HU)),
        float(values.mean()),
        float(p10),
        float(p90),
        core_mean,
        rim_mean,
        float(np.mean(values > CALCIFIC_HU)),
        float(np.log10(volume)),
    ], dtype=np.float64)
