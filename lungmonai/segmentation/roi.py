"""Where in a CT the segmenter needs to look: the box around the lungs.

Nodules lie in the lungs; in a 512x512 chest CT the lungs fill about a third of each slice
and not every slice. Running the U-Net only over their bounding box (plus a margin for
nodules on the pleura) cuts the work of a full-size CT several times, which is what lets
segmentation fit the end-to-end time budget on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LUNG_HU = -400
OUTSIDE_AIR_MEAN_HU = -950
"""Air around the patient averages -1000 HU (less where the scanner pads outside its circular
field of view); lung parenchyma, with its vessels, -800 to -900 (on the embedded dataset the
two sit at -997..-999 and -808..-842)."""


def lung_box(
    hu: np.ndarray,
    spacing_irc: Sequence[float],
    margin_mm: float = 15.0,
    step: int = 4,
    min_volume_ml: float = 20.0,
) -> tuple[slice, slice, slice]:
    """Bounding box (index, row, col slices) of the low-density regions enclosed by the body.

    On a grid subsampled by ``step`` in-plane, voxels below -400 HU are split into 3D
    components; those touching the in-plane border *and* as thin as air (mean below
    ``OUTSIDE_AIR_MEAN_HU``) are the air around the patient, the rest above ``min_volume_ml``
    are lungs and airways. Touching the border alone is not enough: with a tight field of view
    a lung reaches the image edge, and dropping it would drop its nodules. The box grows by
    ``margin_mm`` on every side. No lungs found (a phantom, a cropped scan) gives the whole volume.
    """
    from scipy import ndimage

    depth, rows, cols = hu.shape
    whole = (slice(0, depth), slice(0, rows), slice(0, cols))
    sub = np.asarray(hu[:, ::step, ::step])
    components, count = ndimage.label(sub < LUNG_HU)
    if count == 0:
        return whole
    border = np.unique(
        np.concatenate([components[:, 0, :].ravel(), components[:, -1, :].ravel(), components[:, :, 0].ravel(), components[:, :, -1].ravel()])
    )
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    mean_hu = np.bincount(components.ravel(), weights=sub.ravel().astype(np.float64), minlength=count + 1) / np.maximum(sizes, 1)
    border = border[mean_hu[border] < OUTSIDE_AIR_MEAN_HU]
    voxel_ml = float(np.prod(spacing_irc)) * step * step / 1000.0
    keep = np.flatnonzero(sizes * voxel_ml >= min_volume_ml)
    keep = np.setdiff1d(keep, np.append(border, 0))
    if keep.size == 0:
        return whole
    found = np.argwhere(np.isin(components, keep))
    lo, hi = found.min(axis=0), found.max(axis=0)
    scale = np.array([1, step, step])
    margin = np.ceil(margin_mm / np.asarray(spacing_irc, dtype=np.float64)).astype(int)
    lo = np.maximum(lo * scale - margin, 0)
    hi = np.minimum(hi * scale + scale + margin, hu.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]
