"""How the pipeline fares at a dataset's own resolution: CPM, marks per nodule and per CT, time.

    python bench/bench_resolution.py --dataset_dir DATA [--bundles DIR ...] [--grid native|contract|X,Y,Z]

Analyses every series of ``DATA`` (a LUNA16-format folder, e.g. one written by
``data_prep/make_synthetic_luna.py --mode full``) with each bundles folder in turn, exactly as
``lungmonai analyze`` does, and prints for each:

- LUNA16 CPM with its 95% bootstrap interval, and the 7 FROC sensitivities;
- marks per nodule: the components (CAD marks) whose centre lies within a nodule's radius, median
  and maximum (a nodule shattered into fragments has many), and the nodules no mark reaches;
- marks per CT: components found before the cap, median and range;
- seconds per CT (median) and of it, the resampling onto the working grid.

``--grid native`` analyses at each CT's own voxels (the behaviour before the working grid),
``contract`` (default) at the bundles' grid, ``X,Y,Z`` at another spacing in mm (the networks
stay the ones trained on the contract's grid).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.config import find_bundles  # noqa: E402
from lungmonai.grouping import ComponentCapWarning  # noqa: E402
from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.metrics.froc import bootstrap_froc  # noqa: E402
from lungmonai.pipeline import analyze_ct, load_models, pipeline_settings  # noqa: E402
from lungmonai.tables.candidates import ANNOTATION_COLUMNS, ANNOTATION_FILE, read_luna_csv  # noqa: E402


def _grid(value: str, contract_grid: list[float] | None) -> list[float] | None:
    if value == "native":
        return None
    if value == "contract":
        return contract_grid
    return [float(v) for v in value.split(",")]


def measure(dataset: Path, bundles: Path, grid: str, n_boot: int, limit: int | None = None) -> dict[str, object]:
    models = load_models(bundles, device="cpu")
    models.seg_settings = {**models.seg_settings, "grid_spacing_xyz": _grid(grid, models.seg_settings.get("grid_spacing_xyz"))}
    settings = replace(pipeline_settings(bundles), nodule_threshold=0.0)
    truth = read_luna_csv(dataset / ANNOTATION_FILE, ANNOTATION_COLUMNS)
    series = dict(sorted(find_series(dataset).items())[:limit])
    detections, marks_per_nodule, found, seconds, resample = [], [], [], [], []
    for uid, path in sorted(series.items()):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ComponentCapWarning)
            analysis = analyze_ct(read_ct(path), models, settings)
        seconds.append(time.perf_counter() - start)
        resample.append(analysis.seconds.get("resample", 0.0))
        found.append(analysis.components_found)
        rows = analysis.candidates
        xyz = rows[["center_x", "center_y", "center_z"]].to_numpy(np.float64)
        detections.append(pd.DataFrame({"seriesuid": uid, "coordX": xyz[:, 0], "coordY": xyz[:, 1], "coordZ": xyz[:, 2],
                                        "probability": rows["p_nodule"].to_numpy()}))
        for nodule in truth[truth.seriesuid == uid].itertuples():
            centre = np.array([nodule.coordX, nodule.coordY, nodule.coordZ])
            marks_per_nodule.append(int((np.linalg.norm(xyz - centre, axis=1) <= nodule.diameter_mm / 2).sum()))
    froc = bootstrap_froc(pd.concat(detections, ignore_index=True), truth, list(series), n_boot=n_boot)
    marks = np.array(marks_per_nodule)
    return {"froc": froc, "marks": marks, "found": found, "seconds": seconds, "resample": resample}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--bundles", type=Path, nargs="+", default=None, help="bundles folders (default: the installed ones)")
    ap.add_argument("--grid", default="contract", help="native, contract, or X,Y,Z in mm")
    ap.add_argument("--n_boot", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=None, help="the first N series only (a timing run)")
    args = ap.parse_args()
    for bundles in args.bundles or [find_bundles()]:
        r = measure(args.dataset_dir, bundles, args.grid, args.n_boot, args.limit)
        froc, marks = r["froc"], r["marks"]
        lo, hi = froc["cpm_ci"]
        hit = marks[marks > 0]
        print(f"{bundles} (grid {args.grid}) on {len(r['found'])} CTs, {len(marks)} nodules:")
        print(f"  CPM {froc['cpm']:.3f} [{lo:.3f}-{hi:.3f}]; sensitivities {', '.join(f'{s:.2f}' for s in froc['sensitivities'])}")
        print(f"  marks per nodule: median {statistics.median(hit) if len(hit) else 0:.0f}, max {marks.max(initial=0)}; "
              f"nodules no mark reaches: {int((marks == 0).sum())}")
        print(f"  marks per CT (components before the cap): median {statistics.median(r['found']):.0f}, "
              f"range {min(r['found'])}-{max(r['found'])}")
        print(f"  seconds per CT: median {statistics.median(r['seconds']):.1f} (resampling {statistics.median(r['resample']):.2f})")


if __name__ == "__main__":
    main()
