"""Pictures of a slice with the prediction laid over it, for TensorBoard and reports.

Green: marked and a nodule (true positive); red: a nodule left unmarked (false negative) or
a mark outside any nodule (false positive), as in the book's segmentation chapter. The grey
slice underneath is drawn from the lung window so nodules and vessels both stay visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

TP_RGB = (0.0, 1.0, 0.0)
ERROR_RGB = (1.0, 0.0, 0.0)


def overlay_rgb(image: np.ndarray, label: np.ndarray, prediction: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1]: ``image`` (scaled to [-1, 1]) in grey, TP green, FN and FP red."""
    grey = np.clip((np.asarray(image, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    label = np.asarray(label, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    for mask, colour in ((label & prediction, TP_RGB), (label ^ prediction, ERROR_RGB)):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return rgb


def overlay_figure(panels: Sequence[tuple[str, np.ndarray]], columns: int = 4) -> Figure:
    """A grid of titled overlay images (title, (H, W, 3))."""
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, rgb) in zip(axes.ravel(), panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig
