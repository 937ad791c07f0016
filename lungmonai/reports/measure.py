"""A nodule's size as a radiologist reports it, from its voxel mask.

Lung-RADS sizes a nodule by its mean diameter: the mean of the long axis (the longest
in-plane diameter on the axial slice where the nodule is largest) and the short axis (the
longest diameter perpendicular to it, on the same slice). The equivalent-sphere diameter the
grouping reports (from the voxel count) is not that: an elongated nodule's long axis is well
above it, and Lung-RADS' size thresholds are set for calliper measurements.

Both axes are measured edge to edge on the outline of the mask's pixels (the 0.5 level of
the binary slice, through the pixel edges between inside and outside), not between pixel
centres, which would come out one pixel short; on a voxelised sphere or ellipse the result
is within one in-plane pixel of the true size (tests/reports/test_measure.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours


def round_tenth(value: float) -> float:
    """``value`` to 0.1 mm, halves up, as Lung-RADS rounds sizes (5.95 mm is 6.0 mm, not 5.9)."""
    return float(Decimal(repr(float(value))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _outline_mm(section: np.ndarray, spacing_rc: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (each (N, 2), row/col in mm) of a 2D bool slice, through pixel edges."""
    padded = np.pad(section, 1).astype(np.float32)  # outlines close at the array's border too
    return [(c - 1.0) * spacing_rc for c in find_contours(padded, 0.5)]


def _long_axis(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Longest distance between two outline points (mm) and its unit direction."""
    try:
        points = points[ConvexHull(points).vertices]  # the farthest pair are hull vertices
    except QhullError:  # all points on one line: every point may be an end
        pass
    diff = points[:, None, :] - points[None, :, :]
    dist = np.einsum("ijk,ijk->ij", diff, diff)
    a, b = np.unravel_index(np.argmax(dist), dist.shape)
    length = float(np.sqrt(dist[a, b]))
    direction = diff[a, b] / length if length > 0 else np.array([1.0, 0.0])
    return length, direction


def _short_axis(outlines: Sequence[np.ndarray], direction: np.ndarray, samples: int = 256) -> float:
    """Longest chord perpendicular to ``direction``: at positions along the long axis, where
    the perpendicular line crosses the outline's edges, the span between the outermost
    crossings. A chord, not the shape's width across: on a crescent they differ."""
    normal = np.array([-direction[1], direction[0]])
    u0, u1, v0, v1 = [], [], [], []
    for outline in outlines:
        start, end = outline[:-1], outline[1:]
        u0.append(start @ direction), u1.append(end @ direction)
        v0.append(start @ normal), v1.append(end @ normal)
    u0, u1, v0, v1 = (np.concatenate(x) for x in (u0, u1, v0, v1))
    lo, hi = min(u0.min(), u1.min()), max(u0.max(), u1.max())
    positions = np.linspace(lo, hi, samples + 2)[1:-1]
    best = 0.0
    for t in positions:
        crosses = (u0 - t) * (u1 - t) < 0
        if not crosses.any():
            continue
        frac = (t - u0[crosses]) / (u1[crosses] - u0[crosses])
        v = v0[crosses] + frac * (v1[crosses] - v0[crosses])
        best = max(best, float(v.max() - v.min()))
    return best


def _axes_of_slice(section: np.ndarray, spacing_rc: np.ndarray) -> tuple[float, float]:
    outlines = _outline_mm(section, spacing_rc)
    long_mm, direction = _long_axis(np.concatenate(outlines))
    return long_mm, _short_axis(outlines, direction)


def nodule_size(mask: np.ndarray, spacing_irc: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Long and short axis (mm), mean diameter (mm, to 0.1) and volume (mm³) of one nodule.

    ``mask``: the nodule's voxels, (index, row, col) with axial slices along the first axis
    (the analysis' LUNA16 layout); ``spacing_irc`` the voxel size in mm in the same order.
    The axes are measured on the axial slice of greatest area; where several slices tie, the
    one with the longest long axis. The volume is the voxel count times the voxel volume.
    """
    mask = np.asarray(mask, dtype=bool)
    spacing = np.asarray(spacing_irc, dtype=np.float64).reshape(3)
    if mask.ndim != 3:
        raise ValueError(f"nodule mask must be 3D (index, row, col), got shape {mask.shape}")
    area = mask.sum(axis=(1, 2))
    if not area.any():
        raise ValueError("nodule mask is empty: nothing to measure")
    long_mm, short_mm = max(_axes_of_slice(mask[k], spacing[1:]) for k in np.flatnonzero(area == area.max()))
    return {
        "long_axis_mm": long_mm,
        "short_axis_mm": short_mm,
        "mean_diameter_mm": round_tenth((long_mm + short_mm) / 2),
        "volume_mm3": float(area.sum() * np.prod(spacing)),
    }
