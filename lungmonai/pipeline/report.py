"""What one analysed CT leaves on disk, every file written atomically.

- ``<stem>_submission.csv``: LUNA16's submission rows (every candidate, probability = P(nodule));
- ``<stem>_report.json``: per reported nodule xyz, irc, P(nodule), P(malignant), voxels, diameter;
- ``<stem>_nodule<k>.png``: axial, coronal and sagittal views through each reported nodule, outlined;
- ``<stem>_mask.nii.gz`` (optional): the grouped segmentation mask on the CT's grid.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lungmonai.cache.atomic import atomic_write_csv, atomic_write_json  # noqa: E402
from lungmonai.cache.crops import round_half_up  # noqa: E402
from lungmonai.geometry import xyz_to_irc  # noqa: E402
from lungmonai.io.grid import from_grid  # noqa: E402
from lungmonai.pipeline.analysis import Analysis, PipelineSettings  # noqa: E402
from lungmonai.plots import save_figure  # noqa: E402

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


def nodule_records(analysis: Analysis, settings: PipelineSettings) -> list[dict[str, Any]]:
    records = []
    geometry = analysis.source_geometry or analysis.ct.geometry  # indices into the file as given
    for rank, row in enumerate(_ranked_nodules(analysis, settings).itertuples(index=False), start=1):
        p_mal = None if pd.isna(row.p_malignant) else float(row.p_malignant)
        records.append({
            "rank": rank,
            "center_xyz": [round(float(v), 2) for v in (row.center_x, row.center_y, row.center_z)],
            "center_irc": xyz_to_irc(np.array([row.center_x, row.center_y, row.center_z]), geometry).tolist(),
            "p_nodule": round(float(row.p_nodule), 4),
            "p_malignant": None if p_mal is None else round(p_mal, 4),
            "malignant": None if p_mal is None else bool(p_mal >= settings.malignancy_threshold),  # unrounded, as the confusion table decides
            "voxels": int(row.voxels),
            "diameter_mm": round(float(row.diameter_mm), 2),
        })
    return records


def nodule_figure(analysis: Analysis, record: dict[str, Any], center_irc: Sequence[float]) -> plt.Figure:
    """Three orthogonal views centred on the nodule, in physical proportions, mask outlined.
    ``center_irc``: the component's centre on the analysed (axial-first) grid, which the
    record's ``center_irc`` (the file's own grid) need not be."""
    hu, mask = analysis.ct.hu, analysis.mask
    i, r, c = np.clip(round_half_up(center_irc), 0, np.array(hu.shape) - 1).tolist()
    spacing = analysis.ct.geometry.spacing_irc
    half = [max(4, int(VIEW_MM / 2 / s)) for s in spacing]
    window = [slice(max(0, p - h), min(n, p + h)) for p, h, n in zip((i, r, c), half, hu.shape)]
    views = [
        ("axial", hu[i, window[1], window[2]], mask[i, window[1], window[2]], spacing[1] / spacing[2]),
        ("coronal", hu[window[0], r, window[2]], mask[window[0], r, window[2]], spacing[0] / spacing[2]),
        ("sagittal", hu[window[0], window[1], c], mask[window[0], window[1], c], spacing[0] / spacing[1]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), dpi=100)
    for ax, (name, image, outline, aspect) in zip(axes, views):
        ax.imshow(image, cmap="gray", vmin=-1000, vmax=400, aspect=aspect, origin="upper")
        if outline.any():
            ax.contour(outline.astype(float), levels=[0.5], colors="red", linewidths=1.0)
        ax.set_title(name)
        ax.axis("off")
    p_mal = "n/a" if record["p_malignant"] is None else f"{record['p_malignant']:.2f}"
    fig.suptitle(f"{analysis.ct.series_uid[-24:]}  nodule {record['rank']}: P(nodule) {record['p_nodule']:.2f}, "
                 f"P(malignant) {p_mal}, {record['diameter_mm']:.1f} mm", fontsize=9)
    fig.tight_layout()
    return fig


def _remove_stale_pictures(out: Path, stem: str, keep: set[str]) -> None:
    """Pictures an earlier analysis of this CT left (more nodules then, other thresholds):
    beside the new report they would show nodules it does not list."""
    pattern = re.compile(re.escape(stem) + r"_nodule\d+\.png")
    for old in out.glob(f"{glob.escape(stem)}_nodule*.png"):
        if pattern.fullmatch(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)


def write_reports(analysis: Analysis, out_dir: str | Path, settings: PipelineSettings,
                  pictures: bool = True, write_mask: bool = False) -> dict[str, Any]:
    """Write every output of one CT; returns the JSON report."""
    out = Path(out_dir)
    stem = analysis.ct.series_uid
    records = nodule_records(analysis, settings)
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
    if pictures:  # the most likely nodules only: a picture costs ~0.2 s
        ranked = _ranked_nodules(analysis, settings)[["center_i", "center_r", "center_c"]].to_numpy()
        report["pictures"] = [
            save_figure(nodule_figure(analysis, rec, center), out / f"{stem}_nodule{rec['rank']}.png").name
            for rec, center in zip(records[: settings.max_pictures], ranked)
        ]
    _remove_stale_pictures(out, stem, keep=set(report.get("pictures", [])))
    if write_mask:
        from lungmonai.segmentation import write_like

        mask, geometry = analysis.mask.astype(np.uint8), analysis.ct.geometry
        if analysis.native_grid is not None:  # back at the CT's own spacing, where a viewer overlays it
            shape, geometry = analysis.native_grid
            mask = from_grid(mask, analysis.ct.geometry, shape, geometry, order=0)
        report["mask"] = write_like(mask, geometry, out / f"{stem}_mask.nii.gz").name
    atomic_write_json(out / f"{stem}_report.json", json.loads(json.dumps(report, default=str)))
    return report


def summary_line(report: dict[str, Any]) -> str:
    nodules = report["nodules"]
    malignant = sum(1 for n in nodules if n["malignant"])
    return (f"{report['series_uid']}: {report['candidates']} candidates, {len(nodules)} nodules "
            f"({malignant} rated malignant) in {sum(report['seconds'].values()):.1f} s")
