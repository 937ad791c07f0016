"""Shared matplotlib figures: ROC, confusion table, crop grid; PNGs written atomically."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lungmonai.metrics.classification import roc_auc, roc_curve
from lungmonai.plots import confusion_figure, crop_grid_figure, roc_figure, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_roc_figure_draws_each_curve_with_its_auc():
    score = np.array([0.1, 0.4, 0.35, 0.8])
    label = np.array([0, 0, 1, 1], dtype=bool)
    fig = roc_figure({"model": (score, label), "baseline": (1 - score, label)}, title="val ROC")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"model (AUC {roc_auc(score, label):.3f})", f"baseline (AUC {roc_auc(1 - score, label):.3f})"]
    fpr, tpr, _ = roc_curve(score, label)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), fpr)
    np.testing.assert_allclose(line.get_ydata(), tpr)
    assert ax.get_title() == "val ROC"
    plt.close(fig)


def test_confusion_figure_prints_counts():
    fig = confusion_figure(np.array([[50, 3], [2, 7]]), ["neg", "pos"], ["pred neg", "pred pos"], "t")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["2", "3", "50", "7"]
    plt.close(fig)


@pytest.mark.parametrize("n, rows", [(3, 1), (8, 1), (9, 2)])
def test_crop_grid_layout(n, rows):
    fig = crop_grid_figure(np.random.default_rng(0).normal(size=(n, 1, 4, 5, 6)), labels=[1] * n, columns=8)
    assert len(fig.axes) == rows * 8
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == n
    assert shown[0].images[0].get_array().shape == (5, 6)  # the central axial slice
    assert shown[0].get_title() == "1"
    plt.close(fig)


def test_save_figure_writes_png_and_closes(tmp_path):
    fig = confusion_figure(np.eye(2), ["a", "b"], ["c", "d"], "t")
    path = save_figure(fig, tmp_path / "sub" / "c.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["c.png"]
