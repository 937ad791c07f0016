"""The book's own end-to-end code with its published LUNA16-trained weights, against lungmonai's
evaluation, on the same held-out CTs: LUNA16 CPM of each with its 95% interval, and the
difference paired over the CTs.

    python bench/bench_book_heldout.py --book_repo PATH --dataset_dir data/luna16_heldout \\
        --eval_dir output/recipe/heldout --work output/book_heldout [--limit N] [--part test]

lungmonai's side is an evaluation already made (``--eval_dir``: its ``detections.csv``, every
candidate scored, as ``lungmonai.recipe`` or ``evaluate_split`` writes it), so only the book's
side runs here: its ``p2ch14.nodule_analysis`` steps (segment every slice, group, classify every
component) through ``bench_book_conformance``'s shims, on the CPU. The book's code takes 1-2 min
per full-resolution CT on 2 cores, so each CT's candidates are written to ``--work/book/<uid>.csv``
as it finishes and a rerun skips those: a stopped run resumes. ``--limit N`` takes the first N
CTs of the part (in the split's order), for a shorter run; both sides are scored on the same CTs.

Both sides are scored as LUNA16 does (every candidate; the official script's cap of 100 marks per
scan is reported too), against the dataset's ``annotations.csv``, ignoring marks on
``annotations_excluded.csv`` where one exists.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_book_conformance import CLS_STATE, SEG_STATE, book_analyses, book_workdir  # noqa: E402
from bench_froc_views import OFFICIAL_MARKS, top_marks  # noqa: E402

from lungmonai.cache.atomic import atomic_write_text  # noqa: E402
from lungmonai.metrics.froc import bootstrap_froc, paired_cpm_difference  # noqa: E402
from lungmonai.pipeline.evaluation import truth_table  # noqa: E402
from lungmonai.progress import progress  # noqa: E402
from lungmonai.tables.splits import load_split  # noqa: E402

XYZ = ["coordX", "coordY", "coordZ"]


def book_rows(frame: pd.DataFrame, uid: str) -> pd.DataFrame:
    """The book's scored candidates as LUNA16 submission rows."""
    return pd.DataFrame({"seriesuid": uid, "coordX": frame["center_x"], "coordY": frame["center_y"],
                         "coordZ": frame["center_z"], "probability": frame["p_nodule"]})


def run_missing(book_repo: Path, dataset_dir: Path, uids: list[str], out: Path, batch_size: int) -> None:
    """Analyse with the book's code every CT of ``uids`` without a CSV in ``out`` yet."""
    todo = [uid for uid in uids if not (out / f"{uid}.csv").is_file()]
    print(f"the book's code: {len(uids) - len(todo)} of {len(uids)} CTs done before, {len(todo)} to go", flush=True)
    if not todo:
        return
    models = book_repo / "data/part2/models"
    with tempfile.TemporaryDirectory(prefix="book_heldout_") as tmp:
        work = book_workdir(dataset_dir, todo, Path(tmp) / "book")
        results = book_analyses(book_repo, work, todo, (models / SEG_STATE).resolve(), (models / CLS_STATE).resolve(),
                                batch_size)
        for uid, result in progress(results, total=len(todo), desc="the book's code", unit="CT"):
            atomic_write_text(out / f"{uid}.csv", book_rows(result["candidates"], uid).to_csv(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--book_repo", type=Path, required=True)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--eval_dir", type=Path, required=True, help="lungmonai's evaluation of these CTs (detections.csv)")
    ap.add_argument("--work", type=Path, required=True, help="the book's per-CT candidates are kept here")
    ap.add_argument("--part", default="test")
    ap.add_argument("--limit", type=int, default=None, help="the first N CTs of the part only")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--n_boot", type=int, default=1000)
    args = ap.parse_args()
    dataset_dir = args.dataset_dir.resolve()
    uids = load_split(dataset_dir / "prepared/split.json").series_in(args.part)[: args.limit]
    out = args.work / "book"
    out.mkdir(parents=True, exist_ok=True)
    run_missing(args.book_repo.resolve(), dataset_dir, uids, out, args.batch_size)

    book = pd.concat([pd.read_csv(out / f"{uid}.csv", dtype={"seriesuid": str}) for uid in uids], ignore_index=True)
    ours = pd.read_csv(args.eval_dir / "detections.csv", dtype={"seriesuid": str})[["seriesuid", *XYZ, "probability"]]
    ours = ours[ours["seriesuid"].isin(uids)]
    truth = truth_table(dataset_dir)
    truth = truth[truth["seriesuid"].isin(uids)]
    excluded_path = dataset_dir / "annotations_excluded.csv"
    excluded = pd.read_csv(excluded_path, dtype={"seriesuid": str}) if excluded_path.is_file() else None

    print(f"\n{len(uids)} CTs of {args.part}, {len(truth)} nodules\n")
    print("| pipeline | CPM (95% CI) | CPM, 100 marks per scan | sensitivity at 1 / 4 / 8 FP per scan | marks per CT (median) |")
    print("|---|---|---|---|---|")
    for name, det in (("the book's code, its published weights", book), (f"lungmonai ({args.eval_dir})", ours)):
        every = bootstrap_froc(det, truth, uids, excluded=excluded, n_boot=args.n_boot)
        official = bootstrap_froc(top_marks(det, OFFICIAL_MARKS), truth, uids, excluded=excluded, n_boot=args.n_boot)
        sens = dict(zip(every["fps_per_scan"].tolist(), every["sensitivities"].tolist()))
        per_ct = det.groupby("seriesuid").size().reindex(uids, fill_value=0).median()
        print(f"| {name} | {every['cpm']:.3f} ({every['cpm_ci'][0]:.3f}-{every['cpm_ci'][1]:.3f}) | {official['cpm']:.3f} | "
              f"{sens[1.0]:.3f} / {sens[4.0]:.3f} / {sens[8.0]:.3f} | {per_ct:.0f} |")
    d = paired_cpm_difference(book, ours, truth, uids, excluded=excluded, n_boot=args.n_boot)
    print(f"\nlungmonai minus the book's code, paired over the CTs: {d['difference']:+.3f} "
          f"({d['difference_ci'][0]:+.3f} to {d['difference_ci'][1]:+.3f})")


if __name__ == "__main__":
    main()
