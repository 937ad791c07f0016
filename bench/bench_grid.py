"""Working grids compared at one training budget: val CPM, misses, marks and seconds per CT.

    python bench/bench_grid.py [--grids 1.5,1.5,2 1,1,1.25] [--cls_epochs 2] [--seg_epochs 6]
        [--work output/bench_grid] [--time_cts 8]

Every stage resamples a CT onto the bundles' working grid (``contract.json``), so a grid is
only judged with models trained on it. For each grid this bench

1. links the development dataset's files (``bundles/recipe.json``) into ``WORK/<grid>/data``,
   whose own ``prepared/`` holds the table, the split (the same seed gives the same split) and
   the crop and volume cache on that grid;
2. copies the bundles, with the grid in their contract and no weights;
3. runs the recipe's ``prepare``, ``classifier``, ``segmentation`` and ``operating_point``
   steps at a shortened budget (``--cls_epochs`` and ``--seg_epochs`` epochs of each bundle's
   recipe samples; the segmentation validated at its last epoch only), without hard negatives;
4. prints the val evaluation: CPM with its interval, seconds per CT, the cache's size, and
   ``bench_froc_views.py``'s misses and marks per nodule and per CT, then each grid's CPM
   minus the first grid's, paired over the same CTs (``paired_cpm_difference``);
5. with ``--time_cts N``, times the analysis of N val CTs on each grid again, one grid after
   the other, per stage (resampling, segmentation, grouping, classification, malignancy).

The runs are the recipe's, so each is resumable: rerun the same command after a kill. Figures
come from one machine and one training each; a budget this short ranks grids, it does not give
the shipped weights' figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.config import find_bundles  # noqa: E402


def _name(grid: list[float]) -> str:
    return "x".join(f"{g:g}" for g in grid)


def _setup(work: Path, grid: list[float], bundles: Path) -> tuple[Path, Path]:
    """The grid's dataset folder (links to the development files, its own prepared/) and bundles."""
    settings = json.loads((bundles / "recipe.json").read_text())
    source = (REPO / settings["dataset"]["dir"]).resolve()
    data, copy = work / "data", work / "bundles"
    data.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name != "prepared" and not (data / entry.name).exists():
            (data / entry.name).symlink_to(entry)
    if not (copy / "contract.json").is_file():
        shutil.copytree(bundles, copy, ignore=shutil.ignore_patterns("runs", "*.pt", "hard_negatives", "__pycache__"))
        contract = json.loads((copy / "contract.json").read_text())
        contract["grid_spacing_xyz"] = grid
        (copy / "contract.json").write_text(json.dumps(contract, indent=4) + "\n")
        settings["dataset"]["dir"] = str(data.resolve())
        (copy / "recipe.json").write_text(json.dumps(settings, indent=4) + "\n")
    return data, copy


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", nargs="+", default=["1.5,1.5,2", "1,1,1.25"], help="x,y,z spacings in mm")
    ap.add_argument("--cls_epochs", type=int, default=2)
    ap.add_argument("--seg_epochs", type=int, default=6)
    ap.add_argument("--work", type=Path, default=REPO / "output/bench_grid")
    ap.add_argument("--bundles_dir", default=None)
    ap.add_argument("--time_cts", type=int, default=0,
                    help="then time the analysis of this many val CTs per grid, one grid after the other "
                         "(run it alone: the evaluation's own seconds share the cores with whatever else runs)")
    args = ap.parse_args()
    bundles = find_bundles(args.bundles_dir)
    overrides = [f"nodule_cls.epochs={args.cls_epochs}", f"nodule_seg.epochs={args.seg_epochs}",
                 f"nodule_seg.val_interval={args.seg_epochs}"]
    rows = []
    for text in args.grids:
        grid = [float(v) for v in text.split(",")]
        work = args.work / _name(grid)
        data, copy = _setup(work, grid, bundles)
        command = [sys.executable, "-m", "lungmonai.recipe", "--bundles_dir", str(copy), "--out", str(work / "recipe"),
                   "--steps", "prepare,classifier,segmentation,operating_point"]
        for o in overrides:
            command += ["--override", o]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=REPO)
        state = json.loads((work / "recipe/state.json").read_text())["steps"]
        metrics = json.loads((work / "recipe/val/metrics.json").read_text())
        threshold = json.loads((copy / "contract.json").read_text())["pipeline"]["nodule_threshold"]
        views = subprocess.run([sys.executable, str(REPO / "bench/bench_froc_views.py"), "--dataset_dir", str(data),
                                "--eval_dir", str(work / "recipe/val"), "--part", "val", "--threshold", str(threshold)],
                               check=True, cwd=REPO, capture_output=True, text=True).stdout
        rows.append((grid, metrics, state, _du(data / "prepared"), views))
    print(f"\nbudget: classifier {args.cls_epochs} epochs, segmentation {args.seg_epochs} epochs (each bundle's recipe samples per epoch)")
    for grid, metrics, state, size, views in rows:
        lo, hi = metrics["cpm_ci"]
        minutes = {s: round(state[s]["seconds"] / 60, 1) for s in ("prepare", "classifier", "segmentation", "operating_point") if s in state}
        print(f"\n=== grid {_name(grid)} mm: val CPM {metrics['cpm']:.3f} ({lo:.3f}-{hi:.3f}), "
              f"{metrics['seconds_per_ct_median']:.1f} s per CT (median), prepared data {size:.1f} GiB; minutes {minutes}")
        print(views)
    if len(rows) > 1:
        print(_paired(args.work, [grid for grid, *_ in rows]))
    for text in args.grids if args.time_cts else []:
        print(_timing(args.work / _name([float(v) for v in text.split(",")]), args.time_cts))


def _paired(work: Path, grids: list[list[float]]) -> str:
    """Each grid's val CPM against the first grid's, paired over the same CTs (one bootstrap of
    the CTs scores both), from the evaluations' detections."""
    import pandas as pd

    from lungmonai.metrics.froc import paired_cpm_difference
    from lungmonai.pipeline.evaluation import truth_table
    from lungmonai.tables.splits import load_split

    first = work / _name(grids[0])
    series = load_split(first / "data/prepared/split.json").series_in("val")
    truth = truth_table(first / "data")
    truth = truth[truth["seriesuid"].isin(series)]
    read = lambda g: pd.read_csv(work / _name(g) / "recipe/val/detections.csv", dtype={"seriesuid": str})  # noqa: E731
    lines = []
    for grid in grids[1:]:
        r = paired_cpm_difference(read(grids[0]), read(grid), truth, series)
        lo, hi = r["difference_ci"]
        lines.append(f"val CPM, grid {_name(grid)} minus grid {_name(grids[0])}, paired over the same CTs: "
                     f"{r['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})")
    return "\n".join(lines)


def _timing(work: Path, n: int) -> str:
    """Median seconds per stage of ``analyze_ct`` over the first ``n`` val CTs, the CT read first."""
    import numpy as np

    from lungmonai.io import find_series, read_ct
    from lungmonai.pipeline import analyze_ct, load_models, pipeline_settings
    from lungmonai.tables.splits import load_split

    bundles, data = work / "bundles", work / "data"
    models, settings = load_models(bundles), pipeline_settings(bundles)
    paths = find_series(data)
    stages: dict[str, list[float]] = {}
    for uid in load_split(data / "prepared/split.json").series_in("val")[:n]:
        analysis = analyze_ct(read_ct(paths[uid]), models, settings)
        for stage, seconds in {**analysis.seconds, "total": sum(analysis.seconds.values())}.items():
            stages.setdefault(stage, []).append(seconds)
    medians = ", ".join(f"{stage} {np.median(s):.2f}" for stage, s in stages.items())
    return f"grid {work.name}: seconds per CT over {n} val CTs, median: {medians}"


if __name__ == "__main__":
    main()
