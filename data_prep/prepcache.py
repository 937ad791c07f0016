"""Build or resume the crop/volume cache from an existing candidate table.

    python data_prep/prepcache.py --dataset_dir DATASET [--prepared DATASET/prepared]
        [--cache_dir PREPARED/cache] [--workers N] [--scheduler tcp://host:8786]

Fresh entries are skipped; stale ones (changed CT, parameters or table) are rebuilt.
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
from lungmonai.tables.prepare import prepare_cache
from lungmonai.usererrors import run_command

PROG = Path(__file__).name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, type=Path)
    parser.add_argument("--prepared", type=Path, default=None, help="holds candidates.csv (default DATASET/prepared)")
    parser.add_argument("--cache_dir", type=Path, default=None, help="default PREPARED/cache")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--bundles", default=None, metavar="DIR",
                        help="the bundles whose contract sets the working grid (default: $LUNGMONAI_BUNDLES, else the installed ones)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = prepare_cache(args.dataset_dir, args.prepared, cache_dir=args.cache_dir, workers=args.workers, scheduler=args.scheduler,
                          grid_spacing_xyz=contract(find_bundles(args.bundles))["grid_spacing_xyz"])
    print(json.dumps(report.to_json(), indent=2))
    for uid in sorted(report.damaged):
        print(f"{PROG}: warning: {report.damaged[uid]}; rebuilt", file=sys.stderr)
    for uid in sorted(report.failed):  # the errors, one line each, where errors go
        print(f"{PROG}: error: {report.failed[uid]}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
