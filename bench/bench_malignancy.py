"""Does the malignancy CNN beat diameter alone? Train bundle variants on one budget, evaluate each
(and the per-variant seed ensemble) on the validation series against the diameter baseline, and
print AUCs with bootstrap 95% intervals, the paired AUC difference and the training time.

    python bench/bench_malignancy.py --dataset_dir /tmp/mal200 --classifier_ckpt /tmp/cls/models/model.pt \\
        --variants scratch scratch_share finetune_d2 --seeds 0 1 2 --epochs 8 --epoch_samples 256

Every run goes through `python -m monai.bundle` exactly as a user's would; results land in
``--out/<variant>_s<seed>/eval/metrics.json`` and a summary in ``--out/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRAIN = "bundles/nodule_malignancy/configs/train.json"
EVALUATE = "bundles/nodule_malignancy/configs/evaluate.json"

# name -> bundle overrides; each differs from its neighbour in one choice.
VARIANTS: dict[str, dict[str, Any]] = {
    "finetune_d1": {"finetune_depth": 1},
    "finetune_d2": {"finetune_depth": 2},
    "finetune_all": {"finetune_depth": 6},
    "finetune_gradual": {"finetune_depth": 1, "unfreeze_every": 2, "lr_decay": 0.5},
    "finetune_d2_share": {"finetune_depth": 2, "soft_labels": "share"},
    "finetune_all_share": {"finetune_depth": 6, "soft_labels": "share"},
    "finetune_all_rating": {"finetune_depth": 6, "soft_labels": "rating"},
    "finetune_all_smooth": {"finetune_depth": 6, "label_smoothing": 0.1},
    "finetune_all_mixup": {"finetune_depth": 6, "mixup_alpha": 0.4},
    "finetune_all_share_mixup": {"finetune_depth": 6, "soft_labels": "share", "mixup_alpha": 0.4},
    "finetune_all_cosine": {"finetune_depth": 6, "schedule": "warmup_cosine", "warmup_epochs": 1},
    "finetune_all_lr3e-4": {"finetune_depth": 6, "learning_rate": 3e-4, "schedule": "warmup_cosine", "warmup_epochs": 1},
    "finetune_all_lr1e-4": {"finetune_depth": 6, "learning_rate": 1e-4, "schedule": "warmup_cosine", "warmup_epochs": 1},
    "scratch": {"from_scratch": True},
    "scratch_share": {"from_scratch": True, "soft_labels": "share"},
    "scratch_rating": {"from_scratch": True, "soft_labels": "rating"},
    "scratch_smooth": {"from_scratch": True, "label_smoothing": 0.1},
    "scratch_mixup": {"from_scratch": True, "mixup_alpha": 0.4},
    "scratch_share_mixup": {"from_scratch": True, "soft_labels": "share", "mixup_alpha": 0.4},
    "scratch_scale_aug": {"from_scratch": True, "augment_scale": True},
    "scratch_adamw": {"from_scratch": True, "optimizer_name": "adamw", "learning_rate": 3e-4, "weight_decay": 0.01,
                      "schedule": "warmup_cosine", "warmup_epochs": 1},
}


def _bundle(run_id: str, configs: list[str], overrides: dict[str, Any], log: Path) -> float:
    """Run one bundle command from the repository root; returns wall seconds, raises on failure."""
    config_arg = configs[0] if len(configs) == 1 else repr(configs)
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_arg]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "LUNGMONAI_PROGRESS": "0"}
    start = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log}")
    return time.perf_counter() - start


def _evaluate(common: dict[str, Any], root: Path, ckpts: list[Path], eval_parts: list[str]) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    _bundle("evaluating", [TRAIN, EVALUATE],
            {**common, "bundle_root": str(root), "eval_ckpts": [str(c) for c in ckpts], "eval_parts": eval_parts},
            root / "evaluate.log")
    return json.loads((root / "eval/metrics.json").read_text())


def _row(name: str, report: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    return {
        "variant": name,
        "train_s": None if seconds is None else round(seconds, 1),
        "model_auc": report["model_auc"],
        "model_auc_ci95": report["model_auc_ci95"],
        "diameter_auc": report["diameter_auc"],
        "diameter_auc_ci95": report["diameter_auc_ci95"],
        "auc_minus_diameter": report["auc_minus_diameter"],
        "auc_minus_diameter_ci95": report["auc_minus_diameter_ci95"],
        "p_not_better": report["p_model_not_better_than_diameter"],
        "nodules": report["nodules"],
        "malignant": report["malignant"],
    }


def _fmt(row: dict[str, Any]) -> str:
    def ci(v: list[float | None]) -> str:
        return "[" + ", ".join("nan" if x is None else f"{x:.3f}" for x in v) + "]"

    seconds = "" if row["train_s"] is None else f"{row['train_s']:.0f}"
    return (f"{row['variant']:<28} {seconds:>6} {row['model_auc']:.3f} {ci(row['model_auc_ci95']):<16} "
            f"{row['diameter_auc']:.3f} {ci(row['diameter_auc_ci95']):<16} {row['auc_minus_diameter']:+.3f} "
            f"{ci(row['auc_minus_diameter_ci95']):<17} {row['p_not_better']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", default="data/luna16_synth")
    ap.add_argument("--classifier_ckpt", default="bundles/nodule_cls/models/model.pt")
    ap.add_argument("--out", default="/tmp/bench_malignancy")
    ap.add_argument("--variants", nargs="+", default=["scratch", "scratch_share", "finetune_d2"], choices=sorted(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--epoch_samples", type=int, default=256)
    ap.add_argument("--num_workers", type=int, default=1)
    ap.add_argument("--eval_parts", nargs="+", default=["val"])
    args = ap.parse_args()

    out = Path(args.out).resolve()
    common = {"dataset_dir": str(Path(args.dataset_dir).resolve()), "num_workers": args.num_workers,
              "classifier_ckpt": str(Path(args.classifier_ckpt).resolve())}
    rows = []
    print(f"{'variant':<28} {'train_s':>6} {'model AUC [95% CI]':<22} {'diameter AUC [95% CI]':<22} "
          f"{'model-diameter [95% CI]':<24} p(not better)", flush=True)
    for name in args.variants:
        ckpts, seconds = [], []
        for seed in args.seeds:
            root = out / f"{name}_s{seed}"
            root.mkdir(parents=True, exist_ok=True)
            overrides = {**common, **VARIANTS[name], "bundle_root": str(root), "seed": seed,
                         "epochs": args.epochs, "epoch_samples": args.epoch_samples}
            seconds.append(_bundle("training", [TRAIN], overrides, root / "train.log"))
            ckpts.append(root / "models/model.pt")
            rows.append(_row(f"{name} seed {seed}", _evaluate(common, root, ckpts[-1:], args.eval_parts), seconds[-1]))
            print(_fmt(rows[-1]), flush=True)
        if len(ckpts) > 1:
            report = _evaluate(common, out / f"{name}_ensemble", ckpts, args.eval_parts)
            rows.append(_row(f"{name} ensemble of {len(ckpts)}", report, sum(seconds)))
            print(_fmt(rows[-1]), flush=True)
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
