"""Malignancy models scored end to end on the nodules an evaluation's findings hit, against the
diameter the pipeline measured:

    python bench/bench_malignancy_found.py --dataset_dir data/luna16_heldout --eval_dir output/recipe/heldout \\
        --part test shipped=bundles/nodule_malignancy/models/model.pt share=/tmp/mal/finetune_share_s0/models/model.pt

``bench_malignancy.py`` trains variants and compares them on the val crops of annotated nodules.
This one asks what each would report in the pipeline: for every annotated nodule that a finding
at the operating point hits (LUNA16's rule, the evaluation's ``found_nodules``), it cuts the
crop of that finding exactly as ``analyze_ct`` does (the CT read, put in LPS order, resampled to
the working grid, cropped by the classifier bundle's transform) and scores it with each
checkpoint. Each row gives the AUC with its 95% interval, the measured diameter's on the same
nodules, and their paired difference (one bootstrap over nodules for both). The crops are cut
once and shared by every checkpoint.

The shipped model's scores are checked against the evaluation's own ``p_malignant_image``, so a
mismatch between this bench and the pipeline shows at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.classification.inference import class1_probability, crop_images, predict_logits  # noqa: E402
from lungmonai.config import find_bundles  # noqa: E402
from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.io.grid import to_grid  # noqa: E402
from lungmonai.io.orient import to_lps  # noqa: E402
from lungmonai.malignancy.ensemble import ensemble_from_checkpoints  # noqa: E402
from lungmonai.metrics.baseline import found_nodules, model_against_diameter  # noqa: E402
from lungmonai.pipeline.evaluation import truth_table  # noqa: E402
from lungmonai.pipeline.analysis import pipeline_settings  # noqa: E402
from lungmonai.pipeline.models import load_models  # noqa: E402
from lungmonai.tables.splits import load_split  # noqa: E402

XYZ = ["coordX", "coordY", "coordZ"]


def found_findings(truth: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``found_nodules`` with the finding behind each row: its row in ``detections`` travels in
    place of ``p_malignant``, so the pick is exactly the evaluation's (most likely hit)."""
    rows = found_nodules(truth, detections.assign(p_malignant=np.arange(len(detections), dtype=np.float64)), threshold)
    picked = detections.iloc[rows["p_malignant"].astype(int).to_numpy()].reset_index(drop=True)
    return rows.drop(columns="p_malignant").assign(**{c: picked[c].to_numpy() for c in [*XYZ, "p_malignant_image"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--eval_dir", type=Path, required=True, help="an evaluation's folder (its detections.csv)")
    ap.add_argument("--part", default="test")
    ap.add_argument("--bundles_dir", default=None, help="the bundles the evaluation ran (grid, crop, threshold)")
    ap.add_argument("--n_boot", type=int, default=2000)
    ap.add_argument("checkpoints", nargs="+", help="NAME=PATH of malignancy checkpoints")
    args = ap.parse_args()
    bundles = find_bundles(args.bundles_dir)
    settings = pipeline_settings(bundles)
    threshold = settings.nodule_threshold
    models = load_models(bundles)
    grid = models.seg_settings.get("grid_spacing_xyz")
    series = set(load_split(args.dataset_dir / "prepared/split.json").series_in(args.part))
    truth = truth_table(args.dataset_dir)
    truth = truth[truth["seriesuid"].isin(series)]
    detections = pd.read_csv(args.eval_dir / "detections.csv", dtype={"seriesuid": str})
    found = found_findings(truth, detections, threshold)
    print(f"{len(found)} nodules found at P(nodule) >= {threshold:.4f} ({int(found['mal_bool'].sum())} malignant), "
          f"in {found['seriesuid'].nunique()} CTs", flush=True)

    paths = find_series(args.dataset_dir)
    crops = []
    for uid, rows in found.groupby("seriesuid", sort=False):
        ct = to_grid(to_lps(read_ct(paths[uid])), grid)
        crops.append((rows.index.to_numpy(), crop_images(ct, rows[XYZ].to_numpy(np.float64), models.crop_transform)))
    order = np.concatenate([index for index, _ in crops])
    images = torch.cat([image for _, image in crops])[np.argsort(order)]

    print(f"{'checkpoint':<24} {'AUC [95% CI]':<24} {'diameter AUC [95% CI]':<24} model - diameter [95% CI]")
    for spec in args.checkpoints:
        name, _, path = spec.partition("=")
        network = ensemble_from_checkpoints(models.malignancy, path, models.device)
        p = class1_probability(predict_logits(network, images, device=models.device, batch_size=settings.crop_batch_size,
                                             precision=settings.precision))
        if Path(path).resolve() == (bundles / "nodule_malignancy/models/model.pt").resolve():
            gap = float(np.max(np.abs(p - found["p_malignant_image"].to_numpy())))
            print(f"(the shipped model here against the evaluation's p_malignant_image: max difference {gap:.2e})")
        r = model_against_diameter(found.assign(p_malignant=p), n_boot=args.n_boot)
        m, d, diff = r["model_auc_ci"], r["diameter_auc_ci"], r["difference_ci"]
        print(f"{name:<24} {r['model_auc']:.3f} ({m[0]:.3f}-{m[1]:.3f})       {r['diameter_auc']:.3f} ({d[0]:.3f}-{d[1]:.3f})"
              f"       {r['difference']:+.3f} ({diff[0]:+.3f} to {diff[1]:+.3f})", flush=True)


if __name__ == "__main__":
    main()
