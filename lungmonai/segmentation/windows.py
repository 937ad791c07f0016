"""Seven-slice windows: an axial slice with its neighbours as channels, cut out of a volume.

The 2D U-Net sees depth only through its input channels, so every sample (training crop,
validation slice, inference batch) is built here, the same way: slice ``k`` with ``context``
neighbours on each side, slices past the first or last one repeated (a CT has nothing beyond
its ends, and repeating keeps the nodule's appearance rather than inventing air). In-plane,
a window leaving the volume is padded with air, never shifted, so window pixel ``(r, c)`` is
always volume voxel ``(row0 + r, col0 + c)`` and labels line up.

Works on memory-mapped volumes: only the rows and columns asked for are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

AIR_HU = -1000


def window_slices(index: int, depth: int, context: int = 3) -> np.ndarray:
    """Slice indices of the window around ``index``: ``index-context .. index+context``,
    clipped to ``[0, depth-1]`` (edge slices repeated)."""
    if depth <= 0:
        raise ValueError(f"volume has no slices (depth {depth})")
    if not 0 <= index < depth:
        raise IndexError(f"slice {index} outside a volume of {depth} slices")
    return np.clip(np.arange(index - context, index + context + 1), 0, depth - 1)


def read_window(
    volume: np.ndarray,
    index: int,
    row0: int = 0,
    col0: int = 0,
    size: Sequence[int] | None = None,
    context: int = 3,
    pad_value: int | float = AIR_HU,
) -> np.ndarray:
    """``(2*context+1, rows, cols)`` array of ``volume`` (I, R, C): slices around ``index``, rows
    ``row0 .. row0+rows``, cols ``col0 .. col0+cols`` (``size`` defaults to the whole slice),
    padded with ``pad_value`` outside the volume. Same dtype as ``volume``; a private copy."""
    depth, n_rows, n_cols = volume.shape
    rows, cols = (n_rows, n_cols) if size is None else (int(size[0]), int(size[1]))
    slices = window_slices(int(index), depth, context)
    out = np.full((len(slices), rows, cols), pad_value, dtype=volume.dtype)
    r_lo, r_hi = max(row0, 0), min(row0 + rows, n_rows)
    c_lo, c_hi = max(col0, 0), min(col0 + cols, n_cols)
    if r_hi > r_lo and c_hi > c_lo:
        out[:, r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = volume[slices, r_lo:r_hi, c_lo:c_hi]
    return out


def read_label_patch(
    labels: Any, index: int, row0: int = 0, col0: int = 0, size: Sequence[int] | None = None
) -> np.ndarray:
    """The centre slice's labels under a window (1, rows, cols), zero outside the volume.
    ``labels`` is an (I, R, C) array or a :class:`~lungmonai.segmentation.labels.BoxedMask`,
    read from its box alone (zero outside it)."""
    box = getattr(labels, "box", None)
    if box is None:
        return read_window(labels, index, row0, col0, size, context=0, pad_value=0)
    depth, n_rows, n_cols = labels.shape
    if not 0 <= index < depth:
        raise IndexError(f"slice {index} outside a volume of {depth} slices")
    rows, cols = (n_rows, n_cols) if size is None else (int(size[0]), int(size[1]))
    out = np.zeros((1, rows, cols), dtype=box.dtype)
    (i0, r0, c0), (bi, br, bc) = labels.origin, box.shape
    r_lo, r_hi = max(row0, r0), min(row0 + rows, r0 + br)
    c_lo, c_hi = max(col0, c0), min(col0 + cols, c0 + bc)
    if i0 <= index < i0 + bi and r_hi > r_lo and c_hi > c_lo:
        out[0, r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = box[index - i0, r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
    return out


def batch_windows(volume: np.ndarray, indices: Sequence[int], context: int = 3) -> np.ndarray:
    """Whole-slice windows for several slices at once, ``(B, 2*context+1, R, C)``: one fancy
    index over the volume instead of B small reads (inference batches)."""
    depth = volume.shape[0]
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= depth):
        raise IndexError(f"slices {idx.min()}..{idx.max()} outside a volume of {depth} slices")
    table = np.clip(idx[:, None] + np.arange(-context, context + 1)[None, :], 0, depth - 1)
    return volume[table]
