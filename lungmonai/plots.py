"""Figures shared by TensorBoard handlers and evaluation reports (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lungmonai.cache.atomic import atomic_open  # noqa: E402
from lungmonai.metrics.classification import roc_auc, roc_curve  # noqa: E402


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC") -> Figure:
    """One ROC curve per entry ``name -> (score, label)``, AUC in the legend (book fig. 14.11 style)."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (score, label) in curves.items():
        fpr, tpr, _ = roc_curve(score, label)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(score, label):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> Figure:
    """A count matrix drawn as a table with shaded cells."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 1.2 + 0.6 * len(rows)), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    for (r, c), value in np.ndenumerate(matrix):
        shade = "white" if value > matrix.max() / 2 else "black"
        ax.text(c, r, f"{int(value)}", ha="center", va="center", color=shade)
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def crop_grid_figure(images: np.ndarray, labels: Sequence[int] | None = None, columns: int = 8) -> Figure:
    """Central axial slice of each crop (N, 1, I, R, C) in a grid, label in the corner."""
    images = np.asarray(images)
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.5 * rows), dpi=100, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= n:
            continue
        volume = images[k, 0]
        ax.imshow(volume[volume.shape[0] // 2], cmap="gray")
        if labels is not None:
            ax.set_title(f"{float(labels[k]):g}", fontsize=8)  # soft labels too
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically (temp file then rename) and close the figure."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path
