"""What one analysed CT leaves on disk, every file written atomically.

- ``<stem>_submission.csv``: LUNA16's submission rows (every candidate, probability = P(nodule));
- ``<stem>_report.json``: per reported nodule xyz, irc, P(nodule), P(malignant), voxels, diameter,
  and its measured size: long and short axis, mean diameter, volume (:mod:`lungmonai.reports.measure`);
- ``<stem>_report.html``: the page a reader opens: findings table and pictures (``lungmonai.reports.html``);
- ``<stem>_nodule<k>.png``: axial, coronal and sagittal views through each reported nodule, in the
  radiological convention, outlined, in the lung window, and for a solid, part-solid or calcified
  nodule its axial view in the mediastinal window too (:mod:`lungmonai.reports.views`);
- ``<stem>_mask.nii.gz`` (optional): the grouped segmentation mask on the CT's grid;
- ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` (optional, DICOM series only): each reported nodule as a
  DICOM SEG segment on the source slices and a TID 1500 measurement report
  (:mod:`lungmonai.reports.dicom_out`).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage

from lungmonai.cache.atomic import atomic_write_csv, atomic_write_json
from lungmonai.cache.crops import round_half_up
from lungmonai.geometry import irc_to_xyz, xyz_to_irc
from lungmonai.grouping import erosion_iterations
from lungmonai.io.grid import from_grid
from lungmonai.io.orient import from_lps
from lungmonai.io.volume import Geometry
from lungmonai.pipeline.analysis import Analysis, PipelineSettings
from lungmonai.plots import save_figure
from lungmonai.reports.dicom_out import DicomOutputError, SourceMask, write_dicom_outputs
from lungmonai.reports.html import write_ct_page
from lungmonai.reports.measure import nodule_size
from lungmonai.reports.views import nodule_figure, nodule_views, shows_mediastinal

SUBMISSION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
VIEW_MM = 60.0  # field of view of each nodule picture


def submission_rows(analysis: Analysis) -> pd.DataFrame:
    c = analysis.candidates
    return pd.DataFrame({
        "seriesuid": c["series_uid"], "coordX": c["center_x"], "coordY": c["center_y"],
        "coordZ": c["center_z"], "probability": c["p_nodule"],
    }, columns=SUBMISSION_COLUMNS)


def _ranked_nodules(analysis: Analysis, settings: PipelineSettings) -> pd.DataFrame:
    """The reported nodules, most likely first: the order of the report and its pictures."""
    return analysis.nodules(settings).sort_values("p_nodule", ascending=False, kind="stable")


Component = tuple[np.ndarray, np.ndarray]
"""A nodule's voxels: (irc of the crop's first voxel, bool crop of the working grid holding them all)."""

SIZE_FIELDS = ("long_axis_mm", "short_axis_mm", "mean_diameter_mm", "volume_mm3")


def _nearest_component(crop: np.ndarray, center: np.ndarray, spacing: np.ndarray) -> np.ndarray | None:
    """The face-connected component (the grouping's connectivity) of ``crop`` holding voxel
    ``center``, or else the one with the voxel nearest to it in mm; None when ``crop`` is empty."""
    labels, _ = ndimage.label(crop)
    label = labels[tuple(center)]
    if label == 0:
        voxels = np.argwhere(labels)
        if not len(voxels):
            return None
        nearest = voxels[np.argmin((((voxels - center) * spacing) ** 2).sum(axis=1))]
        label = labels[tuple(nearest)]
    return labels == label


def nodule_component(mask: np.ndarray, center_irc: Sequence[float], spacing_irc: np.ndarray,
                     dilation: int = 0, search_mm: float = 10.0) -> Component | None:
    """The component of the analysis ``mask`` that a candidate centred at ``center_irc`` stands
    for, dilated ``dilation`` times (6-neighbour cross); None without one within ``search_mm``.

    The candidate table does not keep the component's voxels, and the mask's labels are not
    kept either, so the component is found again: the one holding the candidate's centre, or
    (a crescent's weighted centre can fall outside it) the one nearest to it. The search looks
    in a box around the centre, doubled until the component no longer touches its inner faces,
    so only the neighbourhood of the nodule is labelled, never the whole CT.

    ``dilation``: the grouping measures and outlines components after eroding the thresholded
    segmentation ``erosion_iterations`` times, which takes one voxel layer off every side; the
    same number of dilations gives back the segmented nodule (opening, not erosion, of the
    thresholded mask), whose size is the one a reader measures.
    """
    shape = np.array(mask.shape)
    center = np.clip(round_half_up(center_irc).reshape(3), 0, shape - 1)
    half = np.maximum(np.ceil(search_mm / np.asarray(spacing_irc)).astype(int), 2)
    while True:
        lo, hi = np.maximum(center - half, 0), np.minimum(center + half + 1, shape)
        crop = np.asarray(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=bool)
        component = _nearest_component(crop, center - lo, np.asarray(spacing_irc))
        if component is None:
            return None
        cut = [(lo[a] > 0 and component.take(0, axis=a).any()) or (hi[a] < shape[a] and component.take(-1, axis=a).any())
               for a in range(3)]
        if not any(cut):
            break
        half = half * 2
    if dilation:
        lo_d, hi_d = np.maximum(lo - dilation, 0), np.minimum(hi + dilation, shape)
        grown = np.zeros(tuple(hi_d - lo_d), bool)
        grown[tuple(slice(a, b) for a, b in zip(lo - lo_d, hi - lo_d))] = component
        component, lo = ndimage.binary_dilation(grown, iterations=dilation), lo_d
    return lo, component


def _components(analysis: Analysis, settings: PipelineSettings, ranked: pd.DataFrame) -> list[Component | None]:
    """The component of each ranked nodule on the working grid, with the layer the erosion took back."""
    geometry = analysis.ct.geometry
    dilation = erosion_iterations(geometry.spacing_xyz, settings.erosion_mm)
    centers = ranked[["center_i", "center_r", "center_c"]].to_numpy(np.float64)
    return [nodule_component(analysis.mask, c, geometry.spacing_irc, dilation) for c in centers]


def _size_fields(component: Component | None, spacing_irc: np.ndarray) -> dict[str, float | None]:
    if component is None:
        return dict.fromkeys(SIZE_FIELDS)
    size = nodule_size(component[1], spacing_irc)
    return {k: round(v, 1) for k, v in size.items()}


def _rounded_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


def _records(analysis: Analysis, settings: PipelineSettings,
             type_model: Any = None) -> tuple[list[dict[str, Any]], list[Component | None]]:
    records = []
    geometry = analysis.source_geometry or analysis.ct.geometry  # indices into the file as given
    ranked = _ranked_nodules(analysis, settings)
    components = _components(analysis, settings, ranked)
    for rank, (row, component) in enumerate(zip(ranked.itertuples(index=False), components), start=1):
        p_mal = None if pd.isna(row.p_malignant) else float(row.p_malignant)
        p_image = getattr(row, "p_malignant_image", row.p_malignant)  # the image model's own, before any size fusion
        records.append({
            "rank": rank,
            "center_xyz": [round(float(v), 2) for v in (row.center_x, row.center_y, row.center_z)],
            "center_irc": xyz_to_irc(np.array([row.center_x, row.center_y, row.center_z]), geometry).tolist(),
            "p_nodule": round(float(row.p_nodule), 4),
            # the classifier's own, before the segmentation's weight (seg_score_power)
            "p_nodule_image": round(float(getattr(row, "p_nodule_image", row.p_nodule)), 4),
            "p_seg_max": _rounded_or_none(getattr(row, "p_seg_max", None)),
            "p_malignant": _rounded_or_none(p_mal),
            "p_malignant_image": _rounded_or_none(p_image),
            "malignant": None if p_mal is None else bool(p_mal >= settings.malignancy_threshold),  # unrounded, as the confusion table decides
            "voxels": int(row.voxels),
            "diameter_mm": round(float(row.diameter_mm), 2),
            "side": patient_side(analysis.ct.hu, analysis.ct.geometry, (row.center_i, row.center_r, row.center_c)),
            **_size_fields(component, analysis.ct.geometry.spacing_irc),
        })
        records[-1].update(_type_fields(analysis, component, records[-1]["mean_diameter_mm"], type_model))
    return records, components


def _type_fields(analysis: Analysis, component: Component | None, mean_diameter_mm: float | None,
                 type_model: Any) -> dict[str, Any]:
    """Type, calcification and Lung-RADS category of one nodule, from its component's density on
    the working grid (``lungmonai.nodule_type``); None for each where the model or the component
    is missing."""
    if type_model is None or component is None or mean_diameter_mm is None:
        return {"type": None, "calcified": None, "lung_rads": None}
    from lungmonai.nodule_type import predict_type
    from lungmonai.reports.lungrads import nodule_category

    lo, crop = component
    hu = analysis.ct.hu[lo[0]:lo[0] + crop.shape[0], lo[1]:lo[1] + crop.shape[1], lo[2]:lo[2] + crop.shape[2]]
    kind = predict_type(hu, crop, analysis.ct.geometry.spacing_irc, type_model)
    return {"type": kind["type"], "calcified": bool(kind["calcified"]),
            "lung_rads": nodule_category(kind["type"], mean_diameter_mm, None, calcified=bool(kind["calcified"]))}


BODY_HU = -500  # denser than lung: the body's tissue on an axial slice


def patient_side(hu: np.ndarray, geometry: Geometry, center_irc: Sequence[float]) -> str | None:
    """"right" or "left": the patient's side of the body's midline the finding lies on.

    The midline is the centroid of the body's tissue on the finding's axial slice, so the answer
    does not depend on where the scanner put its origin (x < 0 is the patient's right only for an
    origin on the midline). LUNA16's x grows toward the patient's left. None when the slice holds
    no body tissue.
    """
    i = int(np.clip(round_half_up(np.asarray(center_irc, dtype=np.float64))[0], 0, hu.shape[0] - 1))
    body = np.argwhere(hu[i] > BODY_HU)
    if not len(body):
        return None
    midline = irc_to_xyz(np.array([i, *body.mean(axis=0)]), geometry)
    finding = irc_to_xyz(np.asarray(center_irc, dtype=np.float64), geometry)
    return "left" if finding[0] > midline[0] else "right"


def nodule_records(analysis: Analysis, settings: PipelineSettings) -> list[dict[str, Any]]:
    """One entry per reported nodule, most likely first. ``voxels`` and ``diameter_mm`` are the
    grouping's (eroded component, equivalent sphere); ``long_axis_mm``, ``short_axis_mm``,
    ``mean_diameter_mm`` and ``volume_mm3`` are measured on the segmented nodule on the working
    grid (:func:`nodule_component`, :func:`lungmonai.reports.measure.nodule_size`), None when
    the mask has no component at the nodule."""
    return _records(analysis, settings)[0]


def picture_caption(analysis: Analysis, record: dict[str, Any]) -> str:
    """Which nodule, its measured size and its probabilities, in one line."""
    if record.get("long_axis_mm") is None:
        size = f"{record['diameter_mm']:.1f} mm (equivalent sphere)"
    else:
        size = f"{record['long_axis_mm']:.1f} x {record['short_axis_mm']:.1f} mm, {record['volume_mm3']:.0f} mm³"
    p_mal = "n/a" if record["p_malignant"] is None else f"{record['p_malignant']:.2f}"
    kind = "" if not record.get("type") else (
        f", {record['type']}{' calcified' if record.get('calcified') else ''}, Lung-RADS {record['lung_rads']}")
    return (f"{analysis.ct.series_uid[-24:]}  nodule {record['rank']}: {size}, "
            f"P(nodule) {record['p_nodule']:.2f}, P(malignant) {p_mal}{kind}")


def nodule_picture(analysis: Analysis, record: dict[str, Any], center_irc: Sequence[float],
                   component: Component | None) -> Figure:
    """Axial, coronal and sagittal views centred on the nodule, outlined, captioned; the axial
    view in the mediastinal window too where the record's type or calcification asks for it.
    ``center_irc``: the component's centre on the analysed (axial-first) grid, which the
    record's ``center_irc`` (the file's own grid) need not be.

    Only a box of the view's size around the centre is cut out, so the nodule's outline is
    laid on that box rather than on a mask the size of the CT."""
    hu, geometry = analysis.ct.hu, analysis.ct.geometry
    shape = np.array(hu.shape)
    center = np.clip(round_half_up(center_irc).reshape(3), 0, shape - 1)
    half = np.ceil(VIEW_MM / 2 / geometry.spacing_irc).astype(int) + 1
    lo, hi = np.maximum(center - half, 0), np.minimum(center + half + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    outline = np.zeros(tuple(hi - lo), bool)
    if component is not None:
        c_lo, voxels = component
        c_hi = c_lo + np.array(voxels.shape)
        a, b = np.maximum(lo, c_lo), np.minimum(hi, c_hi)
        if np.all(a < b):
            outline[tuple(slice(x, y) for x, y in zip(a - lo, b - lo))] = \
                voxels[tuple(slice(x, y) for x, y in zip(a - c_lo, b - c_lo))]
    box_geometry = Geometry(irc_to_xyz(lo.astype(np.float64), geometry), geometry.spacing_xyz, geometry.direction)
    views = nodule_views(hu[box], outline, box_geometry, center - lo, view_mm=VIEW_MM)
    return nodule_figure(views, picture_caption(analysis, record),
                         mediastinal=shows_mediastinal(record.get("type"), record.get("calcified")))


def mask_on_native_grid(analysis: Analysis, mask: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """A label ``mask`` on the working grid back at the CT's own spacing (nearest voxel), with
    that grid's geometry: where a viewer overlays it on the CT. The axes stay laid out axial-first
    (the geometry says how they run), as a NIfTI file can say."""
    if analysis.native_grid is None:
        return mask, analysis.ct.geometry
    shape, geometry = analysis.native_grid
    return from_grid(mask, analysis.ct.geometry, shape, geometry, order=0), geometry


def mask_on_source_grid(analysis: Analysis, mask: np.ndarray) -> np.ndarray:
    """:func:`mask_on_native_grid` with the axes back in the file's own order and direction, so
    ``[k]`` is the file's k-th slice: what refers to the source's slices by number (DICOM SEG)."""
    native, _ = mask_on_native_grid(analysis, mask)
    return from_lps(native, analysis.source_geometry or analysis.ct.geometry)


def source_masks(analysis: Analysis, components: Sequence[Component | None]) -> list[SourceMask | None]:
    """Each nodule's component put on the source grid, as the slices that hold it (None where the
    nodule has no component or it maps to no source voxel), through the same mapping as the
    written mask, so a segment is the mask's voxels of that nodule.

    The nodules go back together, as labels 1..n of one volume (one resampling, not one per
    nodule: 0.18 s each at 512x512x100); nodules whose voxels overlap (two candidates of one
    component) go in another round, so each keeps all of its voxels."""
    masks: list[SourceMask | None] = [None] * len(components)
    pending = [k for k, component in enumerate(components) if component is not None]
    while pending:
        labels = np.zeros(analysis.mask.shape, np.uint8)
        layer: list[int] = []
        later: list[int] = []
        for k in pending:
            lo, voxels = components[k]  # type: ignore[misc]
            box = labels[tuple(slice(a, a + n) for a, n in zip(lo, voxels.shape))]
            if len(layer) == np.iinfo(np.uint8).max or box[voxels].any():
                later.append(k)
                continue
            layer.append(k)
            box[voxels] = len(layer)
        source = mask_on_source_grid(analysis, labels)
        for label, found in enumerate(ndimage.find_objects(source, max_label=len(layer)), start=1):
            if found is not None:
                masks[layer[label - 1]] = (found[0].start, source[found[0]] == label)
        pending = later
    return masks


def _dicom_outputs(analysis: Analysis, records: list[dict[str, Any]], components: list[Component | None],
                   slice_files: Sequence[Path], out: Path, stem: str) -> dict[str, Any]:
    """The SEG and SR names, or the problem (and the file it is in) that stopped them: recorded
    in the JSON report, which is written either way."""
    try:
        return write_dicom_outputs(slice_files, records, source_masks(analysis, components), out, stem)
    except DicomOutputError as error:
        return {"seg": None, "sr": None, "error": error.problem, "file": str(error.path)}


def _remove_stale_pictures(out: Path, stem: str, keep: set[str]) -> None:
    """Pictures an earlier analysis of this CT left (more nodules then, other thresholds):
    beside the new report they would show nodules it does not list."""
    pattern = re.compile(re.escape(stem) + r"_nodule\d+\.png")
    for old in out.glob(f"{glob.escape(stem)}_nodule*.png"):
        if pattern.fullmatch(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)


def write_reports(analysis: Analysis, out_dir: str | Path, settings: PipelineSettings,
                  pictures: bool = True, write_mask: bool = False, type_model: Any = None,
                  dicom_slices: Sequence[Path] | None = None) -> dict[str, Any]:
    """Write every output of one CT; returns the JSON report. ``type_model``: the nodule-type
    model (``PipelineModels.nodule_type``); without it type and Lung-RADS are left empty.
    ``dicom_slices``: the source series' slice files in the CT's slice order
    (:attr:`lungmonai.io.volume.CTVolume.slice_files`) to write a DICOM SEG and SR for; the
    report's ``dicom`` then names them, or holds the ``error`` and ``file`` that stopped them
    (every other output is written all the same)."""
    out = Path(out_dir)
    stem = analysis.ct.series_uid
    records, components = _records(analysis, settings, type_model)
    atomic_write_csv(out / f"{stem}_submission.csv", submission_rows(analysis), index=False)
    report = {
        "series_uid": analysis.ct.series_uid,
        "source": str(analysis.ct.source),
        "settings": settings.__dict__,
        "candidates": int(len(analysis.candidates)),
        "components_found": analysis.components_found,
        "nodules": records,
        "seconds": {k: round(v, 2) for k, v in analysis.seconds.items()},
    }
    if pictures:  # the most likely nodules only: a picture costs ~0.15 s (bench/bench_reports.py)
        ranked = _ranked_nodules(analysis, settings)[["center_i", "center_r", "center_c"]].to_numpy()
        report["pictures"] = [
            save_figure(nodule_picture(analysis, rec, center, component), out / f"{stem}_nodule{rec['rank']}.png").name
            for rec, center, component in zip(records[: settings.max_pictures], ranked, components)
        ]
    _remove_stale_pictures(out, stem, keep=set(report.get("pictures", [])))
    if write_mask:
        from lungmonai.segmentation import write_like

        mask, geometry = mask_on_native_grid(analysis, analysis.mask.astype(np.uint8))
        report["mask"] = write_like(mask, geometry, out / f"{stem}_mask.nii.gz").name
    if dicom_slices is not None:
        report["dicom"] = _dicom_outputs(analysis, records, components, dicom_slices, out, stem)
    report = json.loads(json.dumps(report, default=str))
    atomic_write_json(out / f"{stem}_report.json", report)
    write_ct_page(report, out)  # after its pictures: the page names only files that are there
    return report


def summary_line(report: dict[str, Any]) -> str:
    nodules = report["nodules"]
    malignant = sum(1 for n in nodules if n["malignant"])
    return (f"{report['series_uid']}: {report['candidates']} candidates, {len(nodules)} nodules "
            f"({malignant} rated malignant) in {sum(report['seconds'].values()):.1f} s")
