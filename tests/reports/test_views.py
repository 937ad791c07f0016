"""The nodule views follow the radiological convention whatever the CT's stored layout, in true
millimetres, with one smooth outline per view, and solid, part-solid and calcified nodules are
shown in the mediastinal window too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D

from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.pipeline.analysis import Analysis
from lungmonai.pipeline.report import nodule_picture
from lungmonai.reports.views import View, nodule_figure, nodule_views, outline_paths

SPACING_IRC = np.array([1.25, 0.7, 0.7])
SHAPE = (40, 64, 64)
CENTER = (20, 32, 32)
# The marker's tip: 8 slices superior (higher index), 10 rows anterior (lower row, y is
# posterior) and 10 columns to the patient's right (lower column, x is left) of the nodule.
TIP = (28, 22, 22)
MARKER_HU = 1000


def synthetic_ct() -> tuple[np.ndarray, np.ndarray]:
    """LUNA16's layout (identity direction): a 6 mm nodule at the centre and a bright marker
    whose tip lies superior, anterior and to the right of it. The marker is three rods from its
    tip, one parallel to each axis, reaching the three planes through the nodule: each view
    cuts one rod where the tip projects onto its plane."""
    i, r, c = np.indices(SHAPE)
    offset_mm = (np.stack([i, r, c], axis=-1) - CENTER) * SPACING_IRC
    nodule = (offset_mm ** 2).sum(axis=-1) <= 3.0 ** 2
    hu = np.full(SHAPE, -800, np.int16)
    hu[nodule] = 40
    ti, tr, tc = TIP
    hu[CENTER[0]:ti + 1, tr, tc] = MARKER_HU  # down to the axial plane
    hu[ti, tr:CENTER[1] + 1, tc] = MARKER_HU  # back to the coronal plane
    hu[ti, tr, tc:CENTER[2] + 1] = MARKER_HU  # leftwards to the sagittal plane
    return hu, nodule


def marker_mm(view: View) -> tuple[float, float]:
    """Where the marker shows, in the view's mm: (right of the centre, above the centre)."""
    row, col = np.unravel_index(np.nanargmax(view.image), view.image.shape)
    left, right, bottom, top = view.extent
    rows, cols = view.image.shape
    return left + (col + 0.5) * (right - left) / cols, top - (row + 0.5) * (top - bottom) / rows


def test_marker_shows_where_a_radiologist_expects_it() -> None:
    hu, nodule = synthetic_ct()
    views = nodule_views(hu, nodule, Geometry((0.0, 0.0, 0.0), SPACING_IRC[::-1]), CENTER)
    by_name = {v.name: v for v in views}
    assert list(by_name) == ["axial", "coronal", "sagittal"]
    anterior, right, superior = 10 * 0.7, 10 * 0.7, 8 * 1.25
    # axial: seen from the feet, anterior up, the patient's right on the image's left
    assert marker_mm(by_name["axial"]) == pytest.approx((-right, anterior))
    assert by_name["axial"].letters == ("R", "L", "A", "P")
    # coronal: seen from the front, superior up, right on the image's left
    assert marker_mm(by_name["coronal"]) == pytest.approx((-right, superior))
    assert by_name["coronal"].letters == ("R", "L", "S", "I")
    # sagittal: seen from the patient's right, superior up, anterior on the image's left
    assert marker_mm(by_name["sagittal"]) == pytest.approx((-anterior, superior))
    assert by_name["sagittal"].letters == ("A", "P", "S", "I")
    for view in views:
        assert view.image.shape == view.outline.shape
        assert view.outline[view.image.shape[0] // 2, view.image.shape[1] // 2]  # the nodule at the centre
        left, right, bottom, top = view.extent
        assert right - left == pytest.approx(61.0, abs=1.3) and top - bottom == pytest.approx(61.0, abs=1.3)  # 60 mm
        rows, cols = view.image.shape
        assert (right - left) / cols == pytest.approx(0.7)  # every pixel its true size
    assert (by_name["coronal"].extent[3] - by_name["coronal"].extent[2]) / by_name["coronal"].image.shape[0] == pytest.approx(1.25)


def stored_otherwise(hu: np.ndarray, nodule: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray, Geometry, tuple]:
    """The same anatomy stored another way, with the geometry that says so (xyz unchanged)."""
    spacing_xyz = SPACING_IRC[::-1]
    n = np.array(SHAPE)
    if how == "mirrored x":  # columns run to the patient's right
        flip = (slice(None), slice(None), slice(None, None, -1))
        center = (CENTER[0], CENTER[1], n[2] - 1 - CENTER[2])
        return hu[flip], nodule[flip], Geometry((0.0, 0.0, 0.0), spacing_xyz, np.diag([-1.0, 1.0, 1.0])), center
    if how == "feet first, prone":  # slices run to inferior, rows to anterior
        flip = (slice(None, None, -1), slice(None, None, -1), slice(None))
        center = (n[0] - 1 - CENTER[0], n[1] - 1 - CENTER[1], CENTER[2])
        return hu[flip], nodule[flip], Geometry((0.0, 0.0, 0.0), spacing_xyz, np.diag([1.0, -1.0, -1.0])), center
    if how == "sagittal stack":  # array axes (x, y, z): ITK axes (z, y, x)
        direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        center = CENTER[::-1]
        return (hu.transpose(2, 1, 0), nodule.transpose(2, 1, 0),
                Geometry((0.0, 0.0, 0.0), SPACING_IRC, direction), center)
    raise ValueError(how)


@pytest.mark.parametrize("how", ["mirrored x", "feet first, prone", "sagittal stack"])
def test_a_ct_stored_otherwise_displays_the_same(how: str) -> None:
    hu, nodule = synthetic_ct()
    expected = nodule_views(hu, nodule, Geometry((0.0, 0.0, 0.0), SPACING_IRC[::-1]), CENTER)
    views = nodule_views(*stored_otherwise(hu, nodule, how))
    for got, want in zip(views, expected, strict=True):
        assert got.name == want.name and got.letters == want.letters
        assert got.extent == pytest.approx(want.extent)
        np.testing.assert_array_equal(got.image, want.image)
        np.testing.assert_array_equal(got.outline, want.outline)


def test_views_near_the_edge_are_filled_outside_the_ct() -> None:
    hu, nodule = synthetic_ct()
    views = nodule_views(hu, nodule, Geometry((0.0, 0.0, 0.0), SPACING_IRC[::-1]), (0, 3, 60))
    axial = views[0]
    assert axial.image.shape == (87, 87)  # still 60 mm across, centred on the voxel asked for
    assert np.isnan(axial.image[0, 0]) and not np.isnan(axial.image[43, 43])
    assert not axial.outline[np.isnan(axial.image)].any()


def test_figure_has_one_smooth_outline_per_view_letters_scale_and_window() -> None:
    # A 9 mm sphere at 0.6 mm: drawn per voxel edge its outline would be a staircase of
    # hundreds of segments; here it is one closed line per view.
    shape, spacing = (60, 60, 60), np.array([0.6, 0.6, 0.6])
    i, r, c = np.indices(shape)
    sphere = ((i - 30.3) ** 2 + (r - 29.6) ** 2 + (c - 30.1) ** 2) * 0.36 <= 4.5 ** 2
    hu = np.where(sphere, 30, -850).astype(np.int16)
    views = nodule_views(hu, sphere, Geometry((0.0, 0.0, 0.0), spacing), (30, 30, 30))
    figure = nodule_figure(views, "nodule 1: 9.0 x 9.0 mm, 382 mm³, P(nodule) 0.97, P(malignant) 0.42")
    figure.canvas.draw()  # renders with Agg
    assert figure._suptitle.get_text().startswith("nodule 1: 9.0 x 9.0 mm")
    for ax, view in zip(figure.axes, views, strict=True):
        outlines = [line for line in ax.get_lines() if line.get_gid() == "outline"]
        assert len(outlines) == 1
        xy = np.asarray(outlines[0].get_xydata())
        assert np.allclose(xy[0], xy[-1])  # closed
        radius = np.hypot(xy[:, 0], xy[:, 1])  # mm from the view's centre voxel
        assert 4.0 < radius.min() and radius.max() < 5.0
        scale = [line for line in ax.get_lines() if line.get_gid() == "scale"]
        assert len(scale) == 1 and np.ptp(scale[0].get_xdata()) == pytest.approx(10.0)
        assert sorted(t.get_text() for t in ax.texts if len(t.get_text()) == 1) == sorted(view.letters)
        assert "lung W1500 L-600" in ax.get_title()
        assert ax.images[0].get_extent() == pytest.approx(list(view.extent))


def test_outline_of_an_empty_or_thin_section() -> None:
    assert outline_paths(np.zeros((9, 9), bool), (-4.5, 4.5, -4.5, 4.5)) == []
    sliver = np.zeros((9, 9), bool)
    sliver[4, 2:7] = True  # one pixel thick: smoothed below 0.5, still outlined
    (path,) = outline_paths(sliver, (-4.5, 4.5, -4.5, 4.5))
    assert 4 < np.ptp(path[:, 0]) < 6 and 0.5 < np.ptp(path[:, 1]) < 2


def solid_nodule_with_calcified_core() -> tuple[np.ndarray, np.ndarray]:
    """A 10 mm solid nodule (40 HU) around a 4 mm calcified core (400 HU), in lung (-850 HU)."""
    i, r, c = np.indices(SHAPE)
    distance = np.sqrt((((np.stack([i, r, c], axis=-1) - CENTER) * SPACING_IRC) ** 2).sum(axis=-1))
    hu = np.where(distance <= 5.0, 40, -850).astype(np.int16)
    hu[distance <= 2.0] = 400
    return hu, distance <= 5.0


def shown_grey(ax, view: View, mm_right: float) -> float:
    """The grey (0 black, 1 white) the panel shows ``mm_right`` right of the centre."""
    image = ax.images[0]
    rows, cols = view.image.shape
    left, right = view.extent[:2]
    col = int((mm_right - left) / (right - left) * cols)
    return float(image.to_rgba(image.get_array())[rows // 2, col, 0])


def test_the_mediastinal_window_shows_calcium_apart_from_soft_tissue() -> None:
    hu, nodule = solid_nodule_with_calcified_core()
    views = nodule_views(hu, nodule, Geometry((0.0, 0.0, 0.0), SPACING_IRC[::-1]), CENTER)
    figure = nodule_figure(views, "nodule 1", mediastinal=True)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["axial   lung W1500 L-600", "coronal   lung W1500 L-600", "sagittal   lung W1500 L-600",
                      "axial   mediastinal W350 L40"]
    lung, mediastinal = figure.axes[0], figure.axes[3]
    np.testing.assert_array_equal(mediastinal.images[0].get_array(), lung.images[0].get_array())  # the same slice
    core, rim, outside = 0.0, 3.5, 15.0  # mm right of the centre
    # Lung window: calcium and soft tissue both near white, a few percent of grey apart.
    assert shown_grey(lung, views[0], core) - shown_grey(lung, views[0], rim) < 0.1
    # Mediastinal window: calcium white, soft tissue mid-grey, lung black.
    assert shown_grey(mediastinal, views[0], core) == pytest.approx(1.0)
    assert shown_grey(mediastinal, views[0], rim) == pytest.approx(0.5, abs=0.05)
    assert shown_grey(mediastinal, views[0], outside) == 0.0
    assert len([line for line in mediastinal.get_lines() if line.get_gid() == "outline"]) == 1


@pytest.mark.parametrize(("nodule_type", "calcified", "panels"), [
    ("solid", False, 4), ("part-solid", False, 4), ("ground-glass", False, 3), ("ground-glass", True, 4),
    (None, None, 3)])
def test_a_reports_picture_adds_the_mediastinal_window_where_it_helps(nodule_type, calcified, panels) -> None:
    hu, nodule = solid_nodule_with_calcified_core()
    ct = CTVolume(hu, Geometry((0.0, 0.0, 0.0), SPACING_IRC[::-1]), Path("ct.mhd"), "1.2.3")
    analysis = Analysis(ct=ct, candidates=pd.DataFrame(), mask=nodule)
    record = {"rank": 1, "long_axis_mm": 10.1, "short_axis_mm": 9.8, "volume_mm3": 520.0, "diameter_mm": 9.9,
              "p_nodule": 0.9, "p_malignant": 0.3, "type": nodule_type, "calcified": calcified, "lung_rads": "4A"}
    figure = nodule_picture(analysis, record, CENTER, (np.zeros(3, int), nodule))
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == panels and all("lung W1500 L-600" in t for t in titles[:3])
    assert ("mediastinal W350 L40" in titles[-1]) == (panels == 4)
