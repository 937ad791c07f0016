"""Axial, coronal and sagittal views through a nodule, as a radiologist reads them.

Radiological convention: the patient's right is on the image's left; the axial view is seen
from the feet with anterior up; the coronal view from the front and the sagittal view from the
patient's right, both with superior up (so anterior is on the sagittal view's left).

Patient directions come from the geometry's direction matrix (ITK's LPS space: x to the
patient's left, y to posterior, z to superior), not from the array's layout: a CT stored feet
first, mirrored or as a sagittal stack is shown the same way as LUNA16's. Each array axis is
matched to the patient axis it is closest to; an oblique acquisition is shown on its own
grid, so its views are tilted by the obliquity, as they would be in a viewer without
reformatting.

Every view is in millimetres (``extent``), so pixels that are not square (1.25 mm slices under
0.7 mm pixels) keep their true proportions, and the outline is a smooth closed line around the
component's section, not the mask's pixel edges, which at fine spacing draw as a lattice.

The views are shown in the lung window; a solid, part-solid or calcified nodule's picture adds
its axial view in the mediastinal window (:func:`shows_mediastinal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from skimage.measure import find_contours  # noqa: E402

from lungmonai.cache.crops import round_half_up  # noqa: E402
from lungmonai.io.volume import Geometry  # noqa: E402

LUNG_WINDOW: tuple[str, float, float] = ("lung", -600.0, 1500.0)
"""(name, level, width) in HU: the window a chest reader reviews nodules in."""
MEDIASTINAL_WINDOW: tuple[str, float, float] = ("mediastinal", 40.0, 350.0)
"""(name, level, width) in HU: -135 to 215 HU from black to white. It tells apart the densities
the lung window runs together: there soft tissue (40 HU) is 93 % grey, fat (-100 HU) 83 % and
calcium (200 HU and more) white; here they are 50 %, 10 % and 96 % to white."""
MEDIASTINAL_TYPES = ("solid", "part-solid")

SCALE_BAR_MM = 10.0
OUTLINE_UPSAMPLE = 4  # outline traced on a 4x finer grid, so its corners are not the pixels'
OUTLINE_SIGMA_PX = 0.6  # smoothing of the section before tracing, in the CT's pixels


@dataclass(frozen=True, eq=False)
class View:
    """One plane through the nodule, ready for ``imshow(image, origin="upper", extent=extent)``.

    ``image``: HU as float, row 0 at the top, NaN outside the CT. ``outline``: the nodule's
    section, same shape. ``extent``: (left, right, bottom, top) in mm from the nodule's centre
    voxel, right and up positive. ``letters``: the patient directions at the image's
    (left, right, top, bottom) edges.
    """

    name: str
    image: np.ndarray
    outline: np.ndarray
    extent: tuple[float, float, float, float]
    letters: tuple[str, str, str, str]


def _patient_layout(direction: np.ndarray) -> tuple[list[int], list[bool]]:
    """For the patient axes z, y, x (in that order): the numpy axis that runs along each and
    whether it runs backwards (towards inferior, anterior or the patient's right).

    Each ITK axis (column of ``direction``) is matched to one patient axis so that the matched
    cosines are largest overall; unlike a per-column argmax this always pairs the three axes
    one to one, even for a strongly oblique acquisition.
    """
    patient, itk = linear_sum_assignment(-np.abs(direction))  # patient axis p <- ITK axis itk[p]
    order = [int(2 - itk[p]) for p in (2, 1, 0)]  # ITK axis j is numpy axis 2 - j
    backwards = [bool(direction[p, itk[p]] < 0) for p in (2, 1, 0)]
    return order, backwards


def _to_patient(array: np.ndarray, order: Sequence[int], backwards: Sequence[bool]) -> np.ndarray:
    """``array`` seen with axes (z, y, x), each increasing to superior, posterior, left (a view, no copy)."""
    moved = np.transpose(array, order)
    return moved[tuple(slice(None, None, -1) if b else slice(None) for b in backwards)]


def _plane(volume: np.ndarray, axis: int, center: Sequence[int], half: Sequence[int], fill: float | bool) -> np.ndarray:
    """The plane ``axis = center[axis]`` of ``volume``, the other two axes cut to
    ``center +- half``, ``fill`` where that reaches outside the volume."""
    other = [a for a in range(3) if a != axis]
    out = np.full([2 * half[a] + 1 for a in other], fill, dtype=np.float32 if isinstance(fill, float) else bool)
    source: list[int | slice] = [0, 0, 0]
    target: list[slice] = []
    source[axis] = int(center[axis])
    for a in other:
        lo, hi = center[a] - half[a], center[a] + half[a] + 1
        source[a] = slice(max(lo, 0), min(hi, volume.shape[a]))
        target.append(slice(max(lo, 0) - lo, out.shape[len(target)] - (hi - min(hi, volume.shape[a]))))
    out[tuple(target)] = volume[tuple(source)]
    return out


def _extent(shape: tuple[int, int], spacing_rc: Sequence[float]) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) in mm of an image centred on its middle pixel."""
    height, width = float(shape[0] * spacing_rc[0]), float(shape[1] * spacing_rc[1])
    return (-width / 2, width / 2, -height / 2, height / 2)


def nodule_views(hu: np.ndarray, mask: np.ndarray, geometry: Geometry, center_irc: Sequence[float],
                 view_mm: float = 60.0) -> list[View]:
    """Axial, coronal and sagittal planes through ``center_irc`` (rounded half up, as ITK
    rounds), ``view_mm`` across, in the radiological convention (module docstring).

    ``hu`` and ``mask`` (the nodule's voxels; its section becomes each view's outline) share the
    grid of ``geometry``, in (index, row, col) order.
    """
    if hu.shape != mask.shape:
        raise ValueError(f"CT shape {hu.shape} differs from the mask's {mask.shape}")
    order, backwards = _patient_layout(geometry.direction)
    shape = np.array(hu.shape)
    index = np.clip(round_half_up(center_irc).reshape(3), 0, shape - 1)
    center = [int(shape[a] - 1 - index[a]) if b else int(index[a]) for a, b in zip(order, backwards)]
    spacing = geometry.spacing_irc[order]  # of the patient axes z, y, x
    half = [max(1, int(round(view_mm / 2 / s))) for s in spacing]
    ct, nodule = _to_patient(hu, order, backwards), _to_patient(mask.astype(bool, copy=False), order, backwards)
    views = []
    # (name, fixed axis, flip rows so superior is up, letters left/right/top/bottom)
    for name, axis, flip_rows, letters in (("axial", 0, False, ("R", "L", "A", "P")),
                                           ("coronal", 1, True, ("R", "L", "S", "I")),
                                           ("sagittal", 2, True, ("A", "P", "S", "I"))):
        image = _plane(ct, axis, center, half, np.nan)
        outline = _plane(nodule, axis, center, half, False)
        if flip_rows:  # rows run from superior (z high) down
            image, outline = image[::-1], outline[::-1]
        spacing_rc = [s for a, s in enumerate(spacing) if a != axis]
        views.append(View(name, np.ascontiguousarray(image), np.ascontiguousarray(outline),
                          _extent(image.shape, spacing_rc), letters))
    return views


def outline_paths(outline: np.ndarray, extent: Sequence[float]) -> list[np.ndarray]:
    """Closed lines (each (N, 2), x and y in the view's mm) around the pieces of ``outline``.

    The section is upsampled and lightly smoothed before its 0.5 level is traced: on the bare
    pixels the line would follow every pixel corner. One line per piece of the section (one
    for a compact nodule), none for an empty section.
    """
    if not outline.any():
        return []
    k = OUTLINE_UPSAMPLE
    fine = np.kron(np.pad(outline, 1).astype(np.float32), np.ones((k, k), np.float32))
    fine = ndimage.gaussian_filter(fine, OUTLINE_SIGMA_PX * k)
    level = min(0.5, 0.5 * float(fine.max()))  # a one-pixel sliver still gets its line
    left, right, bottom, top = extent
    rows, cols = outline.shape
    paths = []
    for line in find_contours(fine, level):
        r = (line[:, 0] + 0.5) / k - 0.5 - 1  # fine grid -> pixel index in ``outline``
        c = (line[:, 1] + 0.5) / k - 0.5 - 1
        x = left + (c + 0.5) * (right - left) / cols
        y = top - (r + 0.5) * (top - bottom) / rows
        paths.append(np.stack([x, y], axis=1))
    return paths


def shows_mediastinal(nodule_type: str | None, calcified: bool | None) -> bool:
    """Whether a nodule's picture adds its axial view in the mediastinal window: for solid and
    part-solid nodules, whose soft-tissue part, fat or calcium it shows apart, and for calcified
    ones. A ground-glass nodule (-700 to -450 HU) is as black there as the lung around it.
    The extra view costs little: a picture took 0.13 s instead of 0.12 s to draw and write,
    69 kB instead of 56 kB (bench/bench_reports.py's CT)."""
    return nodule_type in MEDIASTINAL_TYPES or bool(calcified)


def nodule_figure(views: Sequence[View], caption: str, window: tuple[str, float, float] = LUNG_WINDOW,
                  mediastinal: bool = False) -> Figure:
    """The views side by side in true millimetres, each with its orientation letters, a
    ``SCALE_BAR_MM`` scale bar, the window in its title and the nodule's outline; ``caption``
    above. ``window``: (name, level, width) in HU. ``mediastinal``: the axial view once more,
    last, in :data:`MEDIASTINAL_WINDOW` (see :func:`shows_mediastinal`)."""
    panels = [(view, window) for view in views]
    if mediastinal:
        panels += [(view, MEDIASTINAL_WINDOW) for view in views if view.name == "axial"]
    cmap = plt.get_cmap("gray").with_extremes(bad="black")  # NaN: outside the CT
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.9), dpi=100, squeeze=False)
    for ax, (view, (name, level, width)) in zip(axes[0], panels):
        left, right, bottom, top = view.extent
        ax.imshow(view.image, cmap=cmap, vmin=level - width / 2, vmax=level + width / 2, origin="upper",
                  extent=view.extent, interpolation="nearest")
        for path in outline_paths(view.outline, view.extent):
            ax.plot(path[:, 0], path[:, 1], color="red", linewidth=1.0, gid="outline")
        for (x, y, ha, va), letter in zip(((0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center"),
                                           (0.5, 0.98, "center", "top"), (0.5, 0.02, "center", "bottom")), view.letters):
            ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, color="yellow", fontsize=10, fontweight="bold")
        x0, y0 = left + 0.06 * (right - left), bottom + 0.07 * (top - bottom)
        ax.plot([x0, x0 + SCALE_BAR_MM], [y0, y0], color="white", linewidth=2, solid_capstyle="butt", gid="scale")
        ax.text(x0 + SCALE_BAR_MM / 2, y0 + 0.02 * (top - bottom), f"{SCALE_BAR_MM:g} mm", color="white",
                ha="center", va="bottom", fontsize=7)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{view.name}   {name} W{width:g} L{level:g}", fontsize=9)
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    return fig
