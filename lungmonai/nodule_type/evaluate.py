"""Score a nodule-type model on a generated dataset's rated nodules, against the readers.

    python -m lungmonai.nodule_type.evaluate --dataset_dir DIR [--model FILE] [--parts test ...] [--json OUT]

Without ``--parts`` every series of the dataset counts, and no split is needed: the use is a
held-out set (``data_prep/make_synthetic_luna.py --held_out_from_selection ...``, LIDC patients
the model never saw), where the rarer types are more numerous than in one VAL split. The
figures are those of training's VAL (:func:`lungmonai.nodule_type.train.evaluate`): per-type
accuracy and confusion against the readers' majority, each reader against the others, the
model against the same leave-one-reader-out targets, and calcification alike.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lungmonai.nodule_type.model import load_default_model, load_model
from lungmonai.nodule_type.train import LABELS, counts, crops_for, dataset_record, evaluate, format_evaluation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", required=True, help="generated dataset (manifest.json, masks/)")
    ap.add_argument("--model", default=None, help="model JSON (default: the one shipped with the bundles)")
    ap.add_argument("--bundles_dir", default=None, help="bundles whose contract gives the working grid (default: the installed ones)")
    ap.add_argument("--parts", nargs="+", default=None, choices=("train", "val", "test"),
                    help="series of these parts of prepared/split.json (default: every series)")
    ap.add_argument("--crops", default=None, help="npz keeping the nodules' crops between runs")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args(argv)

    from lungmonai.config import contract, find_bundles

    model = load_model(args.model) if args.model else load_default_model(args.bundles_dir)
    spacing = contract(find_bundles(args.bundles_dir))["grid_spacing_xyz"]
    crops, manifest = crops_for(args.dataset_dir, spacing, args.parts, args.crops)
    if not crops:
        raise ValueError(f"{args.dataset_dir}: no rated nodule in {'every series' if args.parts is None else args.parts}")
    figures = {"dataset": dataset_record(args.dataset_dir, manifest), "parts": args.parts or "all", "labels": LABELS,
               "counts": counts(crops), **evaluate(model, crops)}
    print(f"nodules: {figures['counts']}")
    print(format_evaluation(figures, "all" if args.parts is None else "+".join(args.parts)))
    if args.json:
        from lungmonai.cache.atomic import atomic_write_json

        atomic_write_json(Path(args.json), figures)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
