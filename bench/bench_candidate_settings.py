"""Which candidate settings reach the nodules? The segmentation runs once per CT; every variant of
threshold, erosion and cap is then grouped, classified and scored on the same probabilities.

    python bench/bench_candidate_settings.py --dataset_dir data/luna16_full [--part val] [--bundles DIR]
        [--caps 300 0] [--seg_powers 0 1] [--out DIR] [--baseline DETECTIONS.csv]

It is how the pipeline's ``seg_threshold``, ``erosion_mm``, ``max_components``, ``flip_tta_top`` and
``seg_score_power`` are chosen: on the val series only (never the held-out set). Per variant: CPM, sensitivity at
1 and 8 FP/scan, complete misses (nodules no candidate reaches, after the cap), misses before the
cap, components per CT and seconds per CT for grouping and classification. A cap of 0 keeps every
component, as the pipeline's ``max_components`` 0 does. ``--out`` keeps each
variant's detections (LUNA16 columns); ``--baseline`` takes such a file, made with other weights
on the same CTs, and adds each variant's paired CPM difference against it (scans resampled
jointly: two separate intervals on 49 scans overlap long after the systems differ).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.classification.inference import (  # noqa: E402
    OTHER_FLIPS, class1_probability, complete_flip_average, crop_images, predict_logits)
from lungmonai.config import find_bundles  # noqa: E402
from lungmonai.grouping import ComponentCapWarning, group_segmentation, segmentation_mask  # noqa: E402
from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.io.grid import to_grid  # noqa: E402
from lungmonai.io.orient import to_lps  # noqa: E402
from lungmonai.metrics.froc import compute_froc, hit_matrix, paired_cpm_difference  # noqa: E402
from lungmonai.pipeline import load_models, pipeline_settings  # noqa: E402
from lungmonai.pipeline.analysis import nodule_score  # noqa: E402
from lungmonai.pipeline.evaluation import truth_table  # noqa: E402
from lungmonai.segmentation import segment_ct  # noqa: E402
from lungmonai.tables.splits import load_split  # noqa: E402

XYZ = ["center_x", "center_y", "center_z"]


def _variants(args: argparse.Namespace) -> list[tuple[float, int, int, int, float]]:
    return list(itertools.product(args.thresholds, args.erosions, args.caps, args.tta, args.seg_powers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--part", default="val")
    ap.add_argument("--bundles", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N series only")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5])
    ap.add_argument("--erosions", type=int, nargs="+", default=[0], help="erosion iterations on the working grid")
    ap.add_argument("--caps", type=int, nargs="+", default=[300], help="max_components values (0: every component)")
    ap.add_argument("--tta", type=int, nargs="+", default=[32], help="flip_tta_top values")
    ap.add_argument("--seg_powers", type=float, nargs="+", default=[1.0], help="seg_score_power values")
    ap.add_argument("--out", type=Path, default=None, help="write each variant's detections here")
    ap.add_argument("--baseline", type=Path, default=None, help="detections of other weights on the same CTs")
    args = ap.parse_args()
    bundles = find_bundles(args.bundles)
    models = load_models(bundles, device="cpu", with_malignancy=False)
    settings = pipeline_settings(bundles)
    seg = models.seg_settings
    series = load_split(args.dataset_dir / "prepared/split.json").series_in(args.part)[: args.limit]
    paths = find_series(args.dataset_dir)
    truth = truth_table(args.dataset_dir)
    truth = truth[truth["seriesuid"].isin(series)]
    variants = _variants(args)
    rows: dict[tuple, list[pd.DataFrame]] = {v: [] for v in variants}
    stats: dict[tuple, dict[str, list[float]]] = {v: {"found": [], "kept": [], "seconds": [], "pre_miss": []} for v in variants}
    seg_seconds = []
    for n, uid in enumerate(series):
        ct = to_grid(to_lps(read_ct(paths[uid])), seg.get("grid_spacing_xyz"))
        start = time.perf_counter()
        prob = segment_ct(ct, models.segmenter, models.device, batch_size=settings.seg_batch_size,
                          context=seg["context"], hu_window=seg["hu_window"], precision=settings.precision)
        seg_seconds.append(time.perf_counter() - start)
        t = truth[truth["seriesuid"] == uid]
        t_xyz = t[["coordX", "coordY", "coordZ"]].to_numpy(np.float64)
        run = {"device": models.device, "batch_size": settings.crop_batch_size, "precision": settings.precision}
        for threshold, erosion in itertools.product(args.thresholds, args.erosions):
            start = time.perf_counter()
            mask = segmentation_mask(prob, threshold=threshold, erosion_iterations=erosion)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ComponentCapWarning)
                every = group_segmentation(prob, ct.hu, ct.geometry, mask=mask, max_components=None)
            # The caps keep prefixes of one ranking: classify the longest once, and average the
            # flips of a crop once, whichever cap's top it is in.
            longest = None if 0 in args.caps else max(args.caps)
            groups = every.iloc[:longest].copy()
            p_seg = groups["p_seg_max"].to_numpy(np.float64)
            images = crop_images(ct, groups[XYZ].to_numpy(np.float64), models.crop_transform)
            plain = predict_logits(models.classifier, images, **run)
            shared = time.perf_counter() - start
            flipped: dict[int, torch.Tensor] = {}
            reach = (hit_matrix(t_xyz, t["diameter_mm"].to_numpy(), every[XYZ].to_numpy(np.float64)).any(axis=1)
                     if len(t) else np.zeros(0, bool))
            for cap, tta, power in itertools.product(args.caps, args.tta, args.seg_powers):
                v = (threshold, erosion, cap, tta, power)
                start = time.perf_counter()
                n_kept = cap or len(groups)
                logits = plain[:n_kept].clone()
                top = np.argsort(-nodule_score(class1_probability(logits), p_seg[:n_kept], power), kind="stable")[:tta]
                need = [int(k) for k in top if int(k) not in flipped]
                if need:
                    others = predict_logits(models.classifier, images[torch.tensor(need)], flips=OTHER_FLIPS, **run)
                    for k, row in zip(need, complete_flip_average(plain[need], others)):
                        flipped[k] = row
                for k in top:
                    logits[int(k)] = flipped[int(k)]
                kept = groups.iloc[:n_kept].copy()
                kept["probability"] = nodule_score(class1_probability(logits), p_seg[:n_kept], power)
                stats[v]["seconds"].append(shared * min(n_kept, len(groups)) / max(len(groups), 1) + time.perf_counter() - start)
                stats[v]["found"].append(len(every))
                stats[v]["kept"].append(len(kept))
                stats[v]["pre_miss"].append(float((~reach).sum()))
                rows[v].append(kept.assign(seriesuid=uid).rename(columns={"center_x": "coordX", "center_y": "coordY",
                                                                          "center_z": "coordZ"}))
        print(f"{n + 1}/{len(series)} {uid[-8:]} seg {seg_seconds[-1]:.1f} s", file=sys.stderr, flush=True)
    print(f"\n{len(series)} {args.part} CTs, {len(truth)} nodules; segmentation {np.median(seg_seconds):.1f} s/CT (median)\n")
    baseline = pd.read_csv(args.baseline) if args.baseline else None
    print("| seg threshold | erosion | cap | flip TTA top | seg score power | CPM | sens @1 | sens @8 | misses | misses before cap | "
          "components/CT (median found, kept) | group+classify s/CT |" + (" CPM minus baseline (95% CI) |" if baseline is not None else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if baseline is not None else ""))
    for v in variants:
        det = pd.concat(rows[v], ignore_index=True)[["seriesuid", "coordX", "coordY", "coordZ", "probability"]]
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            det.to_csv(args.out / f"detections_t{v[0]:g}_e{v[1]}_c{v[2]}_tta{v[3]}_p{v[4]:g}.csv", index=False)
        froc = compute_froc(det, truth, series)
        s = stats[v]
        misses = froc["total_nodules"] - froc["detected"]
        paired = ""
        if baseline is not None:
            d = paired_cpm_difference(baseline, det, truth, series)
            paired = f" {d['difference']:+.3f} ({d['difference_ci'][0]:+.3f} to {d['difference_ci'][1]:+.3f}) |"
        print(f"| {v[0]} | {v[1]} | {v[2] or 'all'} | {v[3]} | {v[4]:g} | {froc['cpm']:.3f} | {froc['sensitivities'][3]:.3f} | "
              f"{froc['sensitivities'][6]:.3f} | {misses} | {int(sum(s['pre_miss']))} | "
              f"{np.median(s['found']):.0f}, {np.median(s['kept']):.0f} | {np.median(s['seconds']):.1f} |{paired}", flush=True)


if __name__ == "__main__":
    main()
