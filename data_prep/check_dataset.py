"""Check a LUNA16-format dataset: files per subset, series, CSV rows, missing or broken files.

    python data_prep/check_dataset.py --dataset_dir DATASET [--quick] [--json]

Exits 1 when a problem is found (.mhd without data file, truncated .raw, CSV rows whose
series is missing, ...), so scripts can stop before a long cache build. By default every CT
is read and every CSV value parsed (NaN voxels, text in coordX, a line with a field too many,
a centre outside its CT); --quick checks headers, file sizes and series names only.
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

from lungmonai.tables.check import check_dataset
from lungmonai.usererrors import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="headers, file sizes and series names only; do not read voxels or CSV values")
    parser.add_argument(
        "--allow_missing_series",
        action="store_true",
        help="CSV rows naming series not on disk are warnings, not problems (partial download)",
    )
    args = parser.parse_args(argv)
    report = check_dataset(args.dataset_dir, allow_missing_series=args.allow_missing_series, quick=args.quick)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(run_command(Path(__file__).name, main))
