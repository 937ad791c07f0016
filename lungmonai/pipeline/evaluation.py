"""The end-to-end analysis judged on held-out series: LUNA16 FROC/CPM and the book's confusion table."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv, atomic_write_json, atomic_write_text, jsonable
from lungmonai.data.prepared import assert_no_leak, require_prepared
from lungmonai.grouping import ComponentCapWarning
from lungmonai.io import find_series, read_ct
from lungmonai.metrics.confusion import confusion_for_ct, confusion_summary, confusion_to_dict, format_confusion, sum_confusion
from lungmonai.metrics.baseline import found_nodules, model_against_diameter
from lungmonai.metrics.froc import bootstrap_froc, froc_figure, froc_to_json
from lungmonai.pipeline.analysis import PipelineSettings, analyze_ct
from lungmonai.pipeline.models import PipelineModels, load_models
from lungmonai.pipeline.report import write_reports
from lungmonai.plots import roc_figure, save_figure
from lungmonai.reports.html import write_index
from lungmonai.progress import progress
from lungmonai.synth.heldout import check_held_out
from lungmonai.tables.candidates import (
    ANNOTATION_COLUMNS,
    ANNOTATION_FILE,
    MALIGNANCY_COLUMNS,
    MALIGNANCY_FILE,
    match_malignancy,
    read_luna_csv,
)
from lungmonai.tables.splits import load_split

_XYZ = ["coordX", "coordY", "coordZ"]


def truth_table(dataset_dir: Path) -> pd.DataFrame:
    """LUNA16's ``annotations.csv`` (what FROC is scored on) with ``mal_bool`` attached from
    ``annotations_with_malignancy.csv`` when present. That table leaves out annotations with no
    LIDC match; they stay nodules here, counted benign (no read rates them malignant), so a hit
    on one is a hit and not a false positive."""
    annotations = read_luna_csv(dataset_dir / ANNOTATION_FILE, ANNOTATION_COLUMNS)
    malignancy_path = dataset_dir / MALIGNANCY_FILE
    if not malignancy_path.is_file():
        warnings.warn(
            f"{malignancy_path} not found: every annotated nodule counts as benign, so the confusion "
            "table's Malignant row stays empty (data_prep/build_malignancy_table.py writes it)",
            stacklevel=3,
        )
        return annotations.assign(mal_bool=False)
    malignancy = read_luna_csv(malignancy_path, MALIGNANCY_COLUMNS)
    flags, _ = match_malignancy(annotations, malignancy, malignancy_path)
    return annotations.assign(mal_bool=flags)


def _froc_line(froc: dict[str, Any]) -> str:
    if not froc["total_nodules"]:
        return "\nCPM undefined: no annotated nodule in these series (false positives only)\n"
    lo, hi = froc["cpm_ci"]
    return (f"\nCPM {froc['cpm']:.3f} (95% CI {lo:.3f}-{hi:.3f}); "
            f"sensitivity at 1/8..8 FPs/scan: {', '.join(f'{s:.2f}' for s in froc['sensitivities'])}\n")


def _cap_line(found: dict[str, int], cap: int) -> str:
    """One line for the CTs whose components outnumbered the cap (empty when none did)."""
    capped = [n for n in found.values() if n > cap] if cap else []  # 0: no cap
    if not capped:
        return ""
    return (f"component cap {cap} reached in {len(capped)} of {len(found)} CTs "
            f"({min(capped)}-{max(capped)} components found; the best {cap} by segmentation score were classified)\n")


def _operating_point(froc: dict[str, Any], threshold: float) -> tuple[float, float] | None:
    """(FPs per scan, sensitivity) of the reported findings, those at P(nodule) >= ``threshold``."""
    thresholds = np.asarray(froc["curve_thresholds"])
    at = np.flatnonzero(thresholds >= threshold)
    if not len(at) or not np.isfinite(froc["cpm"]):
        return None
    k = int(at[-1])
    return float(froc["curve_fps"][k]), float(froc["curve_sensitivity"][k])


def _malignancy(truth: pd.DataFrame, detections: pd.DataFrame, settings: PipelineSettings,
                models: PipelineModels, n_boot: int, figure_path: Path) -> dict[str, Any] | None:
    """P(malignant) against the pipeline's own diameter, on the nodules its reported findings hit.

    P(malignant) is what the pipeline reports (with the size fusion where one was chosen); when
    that differs from the image model's own probability, ``image_only`` holds the same figures
    for the image model alone, so the report shows what the fusion added. The ROC curves of
    all of them go to ``figure_path``, the diameter's beside the model's."""
    if models.malignancy is None or detections.empty or detections["diameter_mm"].isna().all():
        return None
    n_boot = max(n_boot, 200)
    found = found_nodules(truth, detections, settings.nodule_threshold)
    result = model_against_diameter(found, n_boot=n_boot)
    label = found["mal_bool"].to_numpy(bool)
    curves = {"P(malignant)": (found["p_malignant"].to_numpy(np.float64), label)}
    if "p_malignant_image" in detections and not detections["p_malignant_image"].equals(detections["p_malignant"]):
        image = found_nodules(truth, detections.assign(p_malignant=detections["p_malignant_image"]), settings.nodule_threshold)
        result["image_only"] = model_against_diameter(image, n_boot=n_boot)
        curves["image model alone"] = (image["p_malignant"].to_numpy(np.float64), image["mal_bool"].to_numpy(bool))
    curves["measured diameter"] = (found["measured_diameter_mm"].to_numpy(np.float64), label)
    if result.get("model_auc") is not None:
        title = f"Malignancy of the {result['nodules']} nodules found ({result['malignant']} malignant)"
        save_figure(roc_figure(curves, title=title), figure_path)
    return result


def _malignancy_line(result: dict[str, Any] | None) -> str:
    if not result or result.get("model_auc") is None:
        return ""
    m, d, diff = result["model_auc_ci"], result["diameter_auc_ci"], result["difference_ci"]
    image = result.get("image_only")
    image_text = "" if not image or image.get("model_auc") is None else (
        f" (image model alone {image['model_auc']:.3f}, {image['model_auc_ci'][0]:.3f}-{image['model_auc_ci'][1]:.3f})")
    return (f"malignancy on the {result['nodules']} nodules found ({result['malignant']} malignant): AUC "
            f"{result['model_auc']:.3f} ({m[0]:.3f}-{m[1]:.3f}){image_text}, measured diameter alone {result['diameter_auc']:.3f} "
            f"({d[0]:.3f}-{d[1]:.3f}); difference {result['difference']:+.3f} ({diff[0]:+.3f} to {diff[1]:+.3f})\n")


def evaluate_split(
    dataset_dir: str | Path,
    part: str = "test",
    out_dir: str | Path = "output/evaluation",
    settings: PipelineSettings = PipelineSettings(),
    models: PipelineModels | None = None,
    prepared_dir: str | Path | None = None,
    n_boot: int = 1000,
    reports: bool = True,
) -> dict[str, Any]:
    """Analyse every series of ``part``; write detections, per-CT reports, metrics JSON and FROC PNG."""
    dataset = Path(dataset_dir)
    prepared = require_prepared(prepared_dir or dataset / "prepared")
    assert_no_leak(prepared, ["train"], [part])
    check_held_out(dataset)  # a held-out set must share no LIDC patient with its development data
    series = load_split(prepared / "split.json").series_in(part)
    if not series:
        raise ValueError(f"{prepared / 'split.json'}: the {part!r} part holds no series")
    paths = find_series(dataset)
    missing = [uid for uid in series if uid not in paths]
    if missing:
        raise FileNotFoundError(f"{dataset}: {len(missing)} {part} series of the split are not on disk, e.g. {missing[0]}")
    models = models or load_models()
    out = Path(out_dir)
    truth = truth_table(dataset)
    excluded_path = dataset / "annotations_excluded.csv"
    excluded = pd.read_csv(excluded_path, dtype={"seriesuid": str}) if excluded_path.is_file() else None

    detections, per_ct, seconds, found, written = [], {}, [], {}, []
    for uid in progress(series, desc=f"analysing {part} series", unit="CT"):
        with warnings.catch_warnings():  # the cap is summed up once below, not warned per CT
            warnings.simplefilter("ignore", ComponentCapWarning)
            analysis = analyze_ct(read_ct(paths[uid]), models, settings)
        seconds.append(sum(analysis.seconds.values()))
        found[uid] = analysis.components_found
        if reports:
            written.append(write_reports(analysis, out / "reports", settings, type_model=models.nodule_type))
        c = analysis.candidates
        frame = pd.DataFrame({"seriesuid": uid, "coordX": c["center_x"], "coordY": c["center_y"],
                              "coordZ": c["center_z"], "probability": c["p_nodule"],
                              "p_nodule": c["p_nodule"],
                              "p_nodule_image": c["p_nodule_image"] if "p_nodule_image" in c else c["p_nodule"],
                              "p_malignant": c["p_malignant"],
                              "p_malignant_image": c["p_malignant_image"] if "p_malignant_image" in c else c["p_malignant"],
                              "diameter_mm": c["diameter_mm"] if "diameter_mm" in c else np.nan})
        detections.append(frame)
        t = truth[truth["seriesuid"] == uid]
        e = excluded[excluded["seriesuid"] == uid] if excluded is not None else None
        per_ct[uid] = confusion_for_ct(
            t[_XYZ].to_numpy(np.float64), t["diameter_mm"].to_numpy(np.float64), t["mal_bool"].to_numpy(bool),
            frame[_XYZ].to_numpy(np.float64), frame["p_nodule"].to_numpy(np.float64),
            frame["p_malignant"].fillna(0.0).to_numpy(np.float64) if models.malignancy is not None else None,
            nodule_threshold=settings.nodule_threshold, malignancy_threshold=settings.malignancy_threshold,
            excluded_xyz=None if e is None else e[_XYZ].to_numpy(np.float64),
            excluded_diameter_mm=None if e is None else e["diameter_mm"].to_numpy(np.float64),
        )
    all_detections = pd.concat(detections, ignore_index=True) if detections else pd.DataFrame(columns=["seriesuid", *_XYZ, "probability"])
    atomic_write_csv(out / "detections.csv", all_detections, index=False)

    froc = bootstrap_froc(all_detections[["seriesuid", *_XYZ, "probability"]], truth, series, excluded=excluded, n_boot=n_boot)
    point = _operating_point(froc, settings.nodule_threshold)
    save_figure(froc_figure(froc, title=f"FROC on the {part} series (CPM {froc['cpm']:.3f})", operating_point=point),
                out / "froc.png")
    total = sum_confusion(per_ct.values())
    malignant_row = total[2]
    metrics = {
        "part": part,
        "series": len(series),
        "seconds_per_ct_median": float(np.median(seconds)) if seconds else None,
        "froc": froc_to_json(froc, include_nodules=False),
        "cpm": froc["cpm"],  # NaN without nodules: null, as jsonable writes every undefined figure
        "cpm_ci": froc.get("cpm_ci"),
        "confusion": confusion_to_dict(total),
        "confusion_summary": confusion_summary(total),
        "malignant_recall": float(malignant_row[3] / malignant_row.sum()) if malignant_row.sum() else None,
        "malignancy": _malignancy(truth[truth["seriesuid"].isin(series)], all_detections, settings, models, n_boot,
                                  out / "malignancy_roc.png"),
        "confusion_per_ct": {uid: confusion_to_dict(m) for uid, m in per_ct.items()},
        "components_found_per_ct": found,
    }
    metrics = jsonable(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    if reports:
        write_index(written, out / "reports", metrics)
    text = (format_confusion(total, title=f"{part}: {len(series)} CTs") + _froc_line(froc)
            + _malignancy_line(metrics["malignancy"]) + _cap_line(found, settings.max_components))
    atomic_write_text(out / "summary.txt", text)
    print(text, flush=True)
    return metrics
