"""Prepare a LUNA16-format dataset: candidate table, patient-level split, crop/volume cache.

    python data_prep/prepare_luna.py --dataset_dir DATASET [--out DATASET/prepared]
        [--split_mode stratified|book|heldout] [--seed 0] [--workers N] [--scheduler tcp://host:8786]
        [--new_split]

Reruns resume the cache and keep split.json (a split is made once; --new_split re-deals it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import lungmonai  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lungmonai.config import contract, find_bundles
from lungmonai.tables.prepare import format_summary, prepare_dataset
from lungmonai.usererrors import run_command

PROG = Path(__file__).name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, type=Path, help="LUNA16-format dataset directory")
    parser.add_argument("--out", type=Path, default=None, help="prepared directory (default DATASET/prepared)")
    parser.add_argument("--split_mode", choices=["stratified", "book", "heldout"], default="stratified",
                        help="heldout: every series to test (a held-out evaluation set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--new_split", action="store_true", help="replace an existing split.json")
    parser.add_argument("--workers", type=int, default=None, help="cache build processes (default: all cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--bundles", default=None, metavar="DIR",
                        help="the bundles whose contract sets the working grid (default: $LUNGMONAI_BUNDLES, else the installed ones)")
    parser.add_argument("--no_cache", action="store_true", help="write table and split only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = prepare_dataset(
        args.dataset_dir,
        args.out,
        split_mode=args.split_mode,
        seed=args.seed,
        fractions=args.fractions,
        new_split=args.new_split,
        workers=args.workers,
        scheduler=args.scheduler,
        cache=not args.no_cache,
        grid_spacing_xyz=contract(find_bundles(args.bundles))["grid_spacing_xyz"],
    )
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    failed = summary.get("cache", {}).get("failed", {})
    for uid in sorted(failed):  # the errors, one line each, where errors go
        print(f"{PROG}: error: {failed[uid]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
