"""Seven-slice windows: edge slices repeated, in-plane padding without shifting."""

from __future__ import annotations

import numpy as np
import pytest

from lungmonai.segmentation.windows import batch_windows, read_label_patch, read_window, window_slices


def _volume() -> np.ndarray:
    depth, rows, cols = 10, 12, 14
    vol = np.zeros((depth, rows, cols), dtype=np.int16)
    vol += np.arange(depth, dtype=np.int16)[:, None, None] * 100  # slice k holds 100*k + ...
    vol += np.arange(rows, dtype=np.int16)[None, :, None]
    return vol


def test_window_repeats_edge_slices() -> None:
    assert window_slices(0, 10).tolist() == [0, 0, 0, 0, 1, 2, 3]
    assert window_slices(9, 10).tolist() == [6, 7, 8, 9, 9, 9, 9]
    assert window_slices(1, 2).tolist() == [0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(IndexError):
        window_slices(10, 10)


def test_read_window_channels_are_neighbour_slices_and_padding_is_air() -> None:
    vol = _volume()
    win = read_window(vol, 0, row0=-2, col0=3, size=(6, 5))
    assert win.shape == (7, 6, 5) and win.dtype == np.int16
    assert (win[:, :2] == -1000).all()
    # pixel (r, c) of the window is voxel (row0 + r, col0 + c): no shift near the border
    assert win[3, 2, 0] == vol[0, 0, 3] and win[6, 5, 4] == vol[3, 3, 7]
    assert [int(win[k, 2, 0]) // 100 for k in range(7)] == [0, 0, 0, 0, 1, 2, 3]


def test_whole_slice_window_and_batches_agree() -> None:
    vol = _volume()
    batch = batch_windows(vol, [0, 5, 9])
    assert batch.shape == (3, 7, 12, 14)
    for b, k in enumerate([0, 5, 9]):
        assert np.array_equal(batch[b], read_window(vol, k))


def test_label_patch_is_the_centre_slice_only() -> None:
    labels = np.zeros((5, 8, 8), dtype=np.uint8)
    labels[2, 3, 3] = 1
    labels[3, 3, 3] = 1
    patch = read_label_patch(labels, 2, row0=1, col0=1, size=(4, 4))
    assert patch.shape == (1, 4, 4) and patch.sum() == 1 and patch[0, 2, 2] == 1
