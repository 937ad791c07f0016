"""An evaluation's detections seen the ways LUNA16 users ask about, from its ``detections.csv``:

    python bench/bench_froc_views.py --dataset_dir data/luna16_heldout --eval_dir output/recipe/heldout
        [--part test] [--threshold P] [--baseline_dir DIR]

- CPM as the pipeline reports it (every candidate scored) and under the official LUNA16 script's
  limit (at most 100 marks per scan counted, the most probable);
- sensitivity for nodules under 6 mm at 4 FP per scan (the larger nodules count as neither hits
  nor false positives: a mark on one is ignored, as LUNA16 ignores marks on excluded findings);
- marks per nodule (candidates within a nodule's radius, for the nodules any candidate reaches)
  and marks per CT, all of them and those at the operating point (``--threshold``, by default
  the bundles' contract's ``nodule_threshold``); each as median and range;
- nodules no candidate reaches, by size;
- with ``--baseline_dir`` (an evaluation of other weights on the same CTs): the CPM difference
  against it, paired over the CTs (``paired_cpm_difference``), which is what a decision between
  the two needs: their separate intervals overlap long after they differ.

Each CPM and sensitivity comes with its 95% interval (bootstrap over scans, LUNA16's way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.config import contract, find_bundles  # noqa: E402
from lungmonai.metrics.froc import bootstrap_froc, hit_matrix, interp_froc, paired_cpm_difference  # noqa: E402
from lungmonai.pipeline.evaluation import truth_table  # noqa: E402
from lungmonai.tables.splits import load_split  # noqa: E402

XYZ = ["coordX", "coordY", "coordZ"]
SMALL_MM = 6.0
OFFICIAL_MARKS = 100


def _range(values: list[int] | np.ndarray) -> str:
    v = np.asarray(values)
    return f"{np.median(v):.0f} ({v.min()}-{v.max()})" if len(v) else "-"


def _sens_at(froc: dict, fps: float) -> tuple[float, float, float]:
    mean = float(interp_froc([fps], froc["curve_fps"], froc["curve_sensitivity"])[0])
    low = float(interp_froc([fps], froc["band_fps"], froc["band_low"])[0])
    high = float(interp_froc([fps], froc["band_fps"], froc["band_high"])[0])
    return mean, low, high


def top_marks(detections: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most probable marks of each scan: what the official LUNA16 script counts."""
    return detections.sort_values("probability", ascending=False, kind="stable").groupby("seriesuid", sort=False).head(n)


def _detections(eval_dir: Path) -> pd.DataFrame:
    return pd.read_csv(eval_dir / "detections.csv", dtype={"seriesuid": str})[["seriesuid", *XYZ, "probability"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--eval_dir", type=Path, required=True)
    ap.add_argument("--part", default="test")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--n_boot", type=int, default=1000)
    ap.add_argument("--baseline_dir", type=Path, default=None, help="an evaluation of other weights on the same CTs")
    args = ap.parse_args()
    threshold = args.threshold if args.threshold is not None else contract(find_bundles(None))["pipeline"]["nodule_threshold"]
    series = load_split(args.dataset_dir / "prepared/split.json").series_in(args.part)
    truth = truth_table(args.dataset_dir)
    truth = truth[truth["seriesuid"].isin(series)]
    excluded_path = args.dataset_dir / "annotations_excluded.csv"
    excluded = pd.read_csv(excluded_path, dtype={"seriesuid": str}) if excluded_path.is_file() else None
    det = _detections(args.eval_dir)

    every = bootstrap_froc(det, truth, series, excluded=excluded, n_boot=args.n_boot)
    official = bootstrap_froc(top_marks(det, OFFICIAL_MARKS), truth, series, excluded=excluded, n_boot=args.n_boot)
    small = truth[truth["diameter_mm"] < SMALL_MM]
    ignored = pd.concat([truth[truth["diameter_mm"] >= SMALL_MM][["seriesuid", *XYZ, "diameter_mm"]],
                         *([excluded[["seriesuid", *XYZ, "diameter_mm"]]] if excluded is not None else [])])
    small_froc = bootstrap_froc(det, small, series, excluded=ignored, n_boot=args.n_boot)

    marks_per_nodule, marks_per_nodule_op, missed = [], [], []
    for uid, t in truth.groupby("seriesuid"):
        d = det[det["seriesuid"] == uid]
        hits = hit_matrix(t[XYZ].to_numpy(), t["diameter_mm"].to_numpy(), d[XYZ].to_numpy())
        reached = hits.any(axis=1)
        marks_per_nodule += hits.sum(axis=1)[reached].tolist()
        op = hits[:, d["probability"].to_numpy() >= threshold]
        marks_per_nodule_op += op.sum(axis=1)[op.any(axis=1)].tolist()
        missed += t["diameter_mm"][~reached].tolist()
    per_ct = det.groupby("seriesuid").size().reindex(series, fill_value=0)
    per_ct_op = det[det["probability"] >= threshold].groupby("seriesuid").size().reindex(series, fill_value=0)

    print(f"{len(series)} CTs, {len(truth)} nodules ({len(small)} under {SMALL_MM:g} mm); operating point P(nodule) >= {threshold:.4f}\n")
    print("| figure | value | 95% CI |\n|---|---|---|")
    print(f"| CPM, every candidate | {every['cpm']:.3f} | {every['cpm_ci'][0]:.3f}-{every['cpm_ci'][1]:.3f} |")
    print(f"| CPM, LUNA16 script's rule (100 marks per scan) | {official['cpm']:.3f} | {official['cpm_ci'][0]:.3f}-{official['cpm_ci'][1]:.3f} |")
    for fps in (1.0, 4.0, 8.0):
        m, lo, hi = _sens_at(every, fps)
        print(f"| sensitivity at {fps:g} FP/scan | {m:.3f} | {lo:.3f}-{hi:.3f} |")
    m, lo, hi = _sens_at(small_froc, 4.0)
    print(f"| sensitivity for nodules < {SMALL_MM:g} mm at 4 FP/scan ({len(small)} nodules) | {m:.3f} | {lo:.3f}-{hi:.3f} |")
    print(f"| nodules no candidate reaches | {len(missed)} of {len(truth)} ({len(missed) / max(len(truth), 1):.1%}) | |")
    print(f"| of them under {SMALL_MM:g} mm | {sum(d < SMALL_MM for d in missed)} | |")
    print(f"| marks per reached nodule, every candidate | {_range(marks_per_nodule)} | |")
    print(f"| marks per found nodule at the operating point | {_range(marks_per_nodule_op)} | |")
    print(f"| marks per CT, every candidate | {_range(per_ct.to_numpy())} | |")
    print(f"| marks per CT at the operating point | {_range(per_ct_op.to_numpy())} | |")
    if args.baseline_dir is not None:
        d = paired_cpm_difference(_detections(args.baseline_dir), det, truth, series, excluded=excluded, n_boot=args.n_boot)
        lo, hi = d["difference_ci"]
        print(f"| CPM minus {args.baseline_dir}'s ({d['cpm_a']:.3f}), paired over the CTs | {d['difference']:+.3f} | "
              f"{lo:+.3f} to {hi:+.3f} |")


if __name__ == "__main__":
    main()
