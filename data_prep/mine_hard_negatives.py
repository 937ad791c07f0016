"""Mine the segmentation's false positives on the training series as classifier negatives.

    python data_prep/mine_hard_negatives.py --dataset_dir DATASET [--per_ct 100] [--margin_mm 3]
    python data_prep/prepare_luna.py --dataset_dir DATASET     # adds them to the table and cache

Needs a trained segmentation (bundles/nodule_seg/models/model.pt). Writes
DATASET/prepared/hard_negatives.csv (LUNA16 candidate format, class 0); the next
prepare_luna.py run joins it to the candidate table, and the nodule classifier trains on it.
Only the split's train series are mined.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import lungmonai  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, type=Path)
    parser.add_argument("--prepared_dir", type=Path, default=None, help="default DATASET/prepared")
    parser.add_argument("--bundles_dir", type=Path, default=None, help="default: the repository's bundles/")
    parser.add_argument("--per_ct", type=int, default=100, help="top-ranked components kept per CT")
    parser.add_argument("--margin_mm", type=float, default=3.0, help="distance beyond a nodule's radius to count as false")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    from lungmonai.cli import bundle_settings
    from lungmonai.pipeline.hard_negatives import mine_hard_negatives
    from lungmonai.pipeline.models import BUNDLES, load_segmentation

    models = load_segmentation(args.bundles_dir or BUNDLES, args.device)
    mined = mine_hard_negatives(args.dataset_dir, models, bundle_settings(), args.per_ct, args.margin_mm, args.prepared_dir)
    print(f"{len(mined)} hard negatives from {mined['seriesuid'].nunique()} training series -> "
          f"{(args.prepared_dir or args.dataset_dir / 'prepared') / 'hard_negatives.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
