"""The malignancy bundle, run through `python -m monai.bundle` as a user would: fine-tune from a
(tiny, untrained) classifier checkpoint with soft labels, mixup and gradual unfreezing, evaluate as a 2-checkpoint ensemble against the diameter baseline, and infer P(malignant)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.bundles.conftest import run_bundle
from tests.helpers import write_luna_dataset

TRAIN = "bundles/nodule_malignancy/configs/train.json"
EVALUATE = "bundles/nodule_malignancy/configs/evaluate.json"
INFERENCE = "bundles/nodule_malignancy/configs/inference.json"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodules_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 series with 2-3 nodules each (alternately malignant), so every split part has both classes."""
    from lungmonai.tables.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("mal_tiny")
    write_luna_dataset(root, n_series=8, shape_irc=(40, 64, 64), nodules_per_series=(2, 3), negatives_per_series=2,
                       noise_hu=30)
    prepare_dataset(root, workers=1)
    return root


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lungmonai.classification import LunaModel

    path = tmp_path_factory.mktemp("cls") / "model.pt"
    torch.save(LunaModel().state_dict(), path)
    return path


def _overrides(dataset: Path, root: Path, classifier: Path, **extra: object) -> dict[str, object]:
    return {"dataset_dir": str(dataset), "bundle_root": str(root), "classifier_ckpt": str(classifier),
            "epochs": 1, "epoch_samples": 16, "batch_size": 8, "num_workers": 0, "finetune_depth": 1,
            "unfreeze_every": 1, "lr_decay": 0.5, "soft_labels": "share", "mixup_alpha": 0.4, "label_smoothing": 0.1,
            **extra}


@pytest.fixture(scope="module")
def trained(nodules_dataset: Path, classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mal_bundle")
    result = run_bundle("run", [TRAIN], _overrides(nodules_dataset, root, classifier, epochs=2))
    (root / "train.log").write_text(result.stdout + result.stderr)
    return root


def test_training_metrics_score_the_hard_label_under_soft_labels_and_mixup(trained: Path) -> None:
    # 16 samples an epoch at 1:1: 8 malignant by is_malignant, whatever the soft or mixed targets are
    lines = [line for line in (trained / "train.log").read_text().splitlines() if "train_tp:" in line]
    assert len(lines) == 2
    for line in lines:
        figures = dict(re.findall(r"(train_\w+): ([\d.]+)", line))
        assert float(figures["train_tp"]) + float(figures["train_fn"]) == 8, line


def test_finetuning_unfreezes_block4_in_epoch_two(trained: Path, classifier: Path) -> None:
    last = torch.load(trained / "models/last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"] and last["samples_seen"]["count"] == 32
    assert last["unfreezing"] == {"depth": 2}
    assert len(last["best_model"]["saved"]) == 1  # the config links the best-model score into the resumable state
    lrs = {g["block"]: g["lr"] for g in last["optimizer"]["param_groups"]}  # AdamW: 2 groups a block (decay or not)
    assert list(lrs) == ["head", "block4"] and list(lrs.values()) == pytest.approx([1e-3, 5e-4])
    best = torch.load(trained / "models/model.pt", map_location="cpu", weights_only=True)
    pretrained = torch.load(classifier, map_location="cpu", weights_only=True)
    assert torch.equal(best["block1.conv1.weight"], pretrained["block1.conv1.weight"])  # frozen throughout
    assert not torch.equal(best["head.weight"], pretrained["head.weight"])
    assert list((trained / "runs").glob("events.out.tfevents.*"))


def test_evaluate_reports_model_and_diameter_auc_with_intervals(nodules_dataset: Path, trained: Path) -> None:
    model = str(trained / "models/model.pt")
    run_bundle("evaluating", [TRAIN, EVALUATE], {"dataset_dir": str(nodules_dataset), "bundle_root": str(trained),
                                                 "num_workers": 0, "eval_ckpts": [model, model]})
    report = json.loads((trained / "eval/metrics.json").read_text())
    items = pd.read_csv(nodules_dataset / "prepared/candidates.csv")
    split = json.loads((nodules_dataset / "prepared/split.json").read_text())["series"]
    val = items[(items["series_uid"].map(split) == "val") & items["is_nodule"]]
    assert report["nodules"] == len(val) and report["malignant"] == int(val["is_malignant"].sum())
    for key in ("model_auc", "diameter_auc"):
        low, high = report[f"{key}_ci95"]
        assert low <= report[key] <= high
    assert report["metrics"]["diameter_auc"] == pytest.approx(report["diameter_auc"])
    assert (trained / "eval/roc.png").stat().st_size > 0


def test_inference_writes_p_malignant_per_nodule(nodules_dataset: Path, trained: Path, tmp_path: Path) -> None:
    mhd = sorted(nodules_dataset.glob("subset*/*.mhd"))[0]
    out_csv = tmp_path / "mal.csv"
    run_bundle("run", [INFERENCE], {"bundle_root": str(trained), "input": str(mhd),
                                     "candidates": str(nodules_dataset / "annotations.csv"), "output_csv": str(out_csv)})
    scores = pd.read_csv(out_csv)
    annotations = pd.read_csv(nodules_dataset / "annotations.csv")
    assert len(scores) == int((annotations["seriesuid"] == mhd.stem).sum()) > 0
    assert scores["p_malignant"].between(0, 1).all()


def test_two_process_training_scores_each_val_nodule_once(nodules_dataset: Path, classifier: Path, tmp_path: Path) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    overrides = _overrides(nodules_dataset, tmp_path / "ddp", classifier, unfreeze_every=0)
    result = run_bundle("training", [TRAIN, "bundles/nodule_malignancy/configs/multi_gpu_train.json"], overrides,
                        launcher=launcher)
    items = pd.read_csv(nodules_dataset / "prepared/candidates.csv")
    split = json.loads((nodules_dataset / "prepared/split.json").read_text())["series"]
    val_nodules = int(((items["series_uid"].map(split) == "val") & items["is_nodule"]).sum())
    line = next(line for line in (result.stdout + result.stderr).splitlines() if "val_tp:" in line)
    counts = dict(re.findall(r"val_(tp|fn|tn|fp): ([\d.]+)", line))
    assert sum(float(v) for v in counts.values()) == val_nodules  # not once per process
