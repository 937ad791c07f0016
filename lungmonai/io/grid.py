"""The working grid: every stage sees voxels of one spacing in mm, whatever the CT's own.

A network learns sizes in voxels. Trained on 1.5 mm pixels and run on LUNA16's 0.5-0.98 mm ones,
the segmenter broke each nodule into a median of 13 components and the pipeline's CPM fell from
0.63 (the same CTs resampled to 1.5 mm first) to 0.24. So the cache, the training data, the bundle
inference and the pipeline all put a CT on the contract's ``grid_spacing_xyz`` first, and put
their voxel outputs back on the CT's own grid.

The working grid keeps the CT's origin and direction; only the spacing changes, so patient
coordinates (xyz) mean the same on both grids. Voxel ``k`` of an axis lies at ``k * new / old``
in the old grid's index, the last one no further than the CT's last voxel. Resampling is
separable: one pass of linear interpolation (or nearest neighbour, for label masks) per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lungmonai.io.volume import CTVolume, Geometry

_TOLERANCE = 1e-6  # mm: spacings closer than this are the same grid


def grid_shape(shape_irc: Sequence[int], spacing_irc: Sequence[float], target_irc: Sequence[float]) -> tuple[int, int, int]:
    """Voxels per axis of the working grid over the extent of a ``shape_irc`` volume."""
    return tuple(int(np.floor((n - 1) * s / t + 1e-6)) + 1 for n, s, t in zip(shape_irc, spacing_irc, target_irc))  # type: ignore[return-value]


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return bool(np.all(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) < _TOLERANCE))


def resample_axes(array: np.ndarray, step_irc: Sequence[float], shape_irc: Sequence[int], order: int = 1) -> np.ndarray:
    """``array`` sampled at index ``k * step`` along each axis, ``shape_irc`` samples per axis.

    ``order`` 1 interpolates linearly (images, probabilities), 0 takes the nearest voxel (label
    masks). Positions past the last voxel take the edge value. An axis with step 1 and the same
    size is left untouched, so a CT already on the grid comes back bit for bit. The result has
    ``array``'s dtype (rounded for integers).
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    x = torch.from_numpy(np.ascontiguousarray(array))
    integer = not torch.is_floating_point(x)
    work = x if order == 0 else x.to(torch.float32)
    # The axes that shrink most go first, so the later passes work on the smaller array (on a
    # 512x512 CT going to coarser pixels and finer slices, that order halves the time).
    for axis in sorted(range(3), key=lambda a: shape_irc[a] / max(array.shape[a], 1)):
        step, n_out = step_irc[axis], shape_irc[axis]
        n_in = work.shape[axis]
        if abs(step - 1.0) < 1e-9 and n_out == n_in:
            continue
        pos = (torch.arange(int(n_out), dtype=torch.float64) * float(step)).clamp(0, n_in - 1)
        if order == 0:
            work = work.index_select(axis, torch.floor(pos + 0.5).long().clamp(max=n_in - 1))
            continue
        lo = torch.floor(pos).long()
        hi = (lo + 1).clamp(max=n_in - 1)
        view = [1, 1, 1]
        view[axis] = -1
        weight = (pos - lo).to(torch.float32).view(view)
        work = torch.lerp(work.index_select(axis, lo), work.index_select(axis, hi), weight)
    if work is x:
        return array
    if integer and order == 1:
        work = work.round()
    # An array numpy owns: one viewing torch's storage made DataLoader workers fail to collate
    # the label windows cut from it ("Trying to resize storage that is not resizable").
    return np.array(work.to(x.dtype).numpy(), copy=True)


def grid_geometry(geometry: Geometry, spacing_xyz: Sequence[float]) -> Geometry:
    """``geometry`` with the working grid's spacing: same origin, same direction."""
    return Geometry(geometry.origin_xyz, np.asarray(spacing_xyz, dtype=np.float64), geometry.direction)


def to_grid(ct: CTVolume, spacing_xyz: Sequence[float] | None) -> CTVolume:
    """``ct`` on the working grid (linear interpolation of HU); ``ct`` itself when it already is
    or when ``spacing_xyz`` is None (the CT's own voxels, as the book analyses them)."""
    hu, geometry = array_to_grid(ct.hu, ct.geometry, spacing_xyz, order=1)
    return ct if hu is ct.hu else CTVolume(hu, geometry, ct.source, ct.series_uid)


def array_to_grid(array: np.ndarray, geometry: Geometry, spacing_xyz: Sequence[float] | None,
                  order: int = 0) -> tuple[np.ndarray, Geometry]:
    """An array on a CT's grid (a label mask: nearest by default) put on the working grid,
    with that grid's geometry."""
    if spacing_xyz is None or _same(geometry.spacing_xyz, spacing_xyz):
        return array, geometry
    target = grid_geometry(geometry, spacing_xyz)
    shape = grid_shape(array.shape, geometry.spacing_irc, target.spacing_irc)
    return resample_axes(array, target.spacing_irc / geometry.spacing_irc, shape, order=order), target


def from_grid(array: np.ndarray, grid: Geometry, shape_irc: Sequence[int], geometry: Geometry, order: int = 1) -> np.ndarray:
    """An array on the working grid ``grid`` put back on a CT's own grid (``geometry``,
    ``shape_irc``, same origin and direction): linear for probabilities, nearest for masks."""
    if tuple(array.shape) == tuple(shape_irc) and _same(grid.spacing_xyz, geometry.spacing_xyz):
        return array
    return resample_axes(array, geometry.spacing_irc / grid.spacing_irc, shape_irc, order=order)
