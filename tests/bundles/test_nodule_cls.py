"""The nodule classification bundle, run through `python -m monai.bundle` as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.bundles.conftest import REPO, run_bundle
from tests.helpers import write_reoriented

CONFIGS = REPO / "bundles/nodule_cls/configs"
TRAIN = "bundles/nodule_cls/configs/train.json"
pytestmark = pytest.mark.slow


def _small(dataset: Path, root: Path, **extra: object) -> dict[str, object]:
    return {"dataset_dir": str(dataset), "bundle_root": str(root), "epochs": 1, "epoch_samples": 32,
            "batch_size": 8, "num_workers": 0, **extra}


@pytest.fixture(scope="module")
def trained(tiny_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls_bundle")
    run_bundle("training", [TRAIN], _small(tiny_prepared, root))
    return root


def test_training_writes_best_and_last_checkpoints_and_tensorboard(trained: Path) -> None:
    best = torch.load(trained / "models/model.pt", map_location="cpu", weights_only=True)
    assert "head.weight" in best  # a plain state_dict, loadable into LunaModel
    last = torch.load(trained / "models/last.pt", map_location="cpu", weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "samples_seen", "trainer"} <= set(last)
    assert len(last["best_model"]["saved"]) == 1  # the config links the best-model score into the resumable state
    assert last["trainer"]["iteration"] == last["trainer"]["epoch_length"] == 4  # one epoch of 32 / 8
    assert last["samples_seen"]["count"] == 32
    events = list((trained / "runs").glob("events.out.tfevents.*"))
    assert events and (trained / "runs/augmented_samples.png").stat().st_size > 0


def test_resume_continues_from_the_last_epoch(tiny_prepared: Path, trained: Path, tmp_path: Path) -> None:
    root = tmp_path / "resumed"
    shutil.copytree(trained / "models", root / "models")
    result = run_bundle("training", [TRAIN], _small(tiny_prepared, root, epochs=2, resume=True))
    last = torch.load(root / "models/last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"]
    assert last["samples_seen"]["count"] == 64  # 32 before the restart, 32 after
    assert "Epoch[2]" in result.stderr + result.stdout and "Epoch[1] Complete" not in result.stderr + result.stdout


def test_evaluate_writes_metrics_and_figures(tiny_prepared: Path, trained: Path) -> None:
    run_bundle("evaluating", [TRAIN, "bundles/nodule_cls/configs/evaluate.json"],
               {"dataset_dir": str(tiny_prepared), "bundle_root": str(trained), "num_workers": 0, "eval_parts": ["test"]})
    report = json.loads((trained / "eval/metrics.json").read_text())
    table = pd.read_csv(tiny_prepared / "prepared/candidates.csv")
    split = json.loads((tiny_prepared / "prepared/split.json").read_text())["series"]
    test_rows = table[table["series_uid"].map(split) == "test"]
    assert report["part"] == "test"
    assert report["count"] == len(test_rows) and report["positives"] == int(test_rows["is_nodule"].sum())
    assert {"precision", "recall", "f1", "auc", "loss_pos", "correct_neg"} <= set(report["metrics"])
    assert (trained / "eval/confusion_matrix.png").stat().st_size > 0
    # The operating point reaches the configured recall on the evaluated part.
    point = report["operating_point"]
    assert point["min_recall"] == 0.9 and point["recall"] >= 0.9
    assert point["tp"] + point["fn"] == report["positives"]


def test_inference_scores_every_candidate_of_the_ct(tiny_prepared: Path, trained: Path, tmp_path: Path) -> None:
    table = pd.read_csv(tiny_prepared / "candidates.csv")
    mhd = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    out_csv = tmp_path / "scores.csv"
    run_bundle("run", ["bundles/nodule_cls/configs/inference.json"],
               {"bundle_root": str(trained), "input": str(mhd), "candidates": str(tiny_prepared / "candidates.csv"),
                "output_csv": str(out_csv)})
    scores = pd.read_csv(out_csv)
    assert len(scores) == int((table["seriesuid"] == mhd.stem).sum())
    assert scores["p_nodule"].between(0, 1).all()
    assert list(scores.columns[:4]) == ["seriesuid", "coordX", "coordY", "coordZ"]


def test_inference_names_its_output_by_series_and_reads_a_flipped_nifti_alike(
    tiny_prepared: Path, trained: Path, tmp_path: Path
) -> None:
    mhd = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    nifti = tmp_path / "nifti" / f"{mhd.stem}.nii.gz"  # same series, stored flipped in x and y
    write_reoriented(mhd, nifti, flips=(True, True, False))
    for source, out in ((mhd, tmp_path / "a"), (nifti, tmp_path / "b")):
        run_bundle("run", ["bundles/nodule_cls/configs/inference.json"],
                   {"bundle_root": str(trained), "input": str(source), "candidates": str(tiny_prepared / "candidates.csv"),
                    "output_dir": str(out)})
    a = pd.read_csv(tmp_path / "a" / f"{mhd.stem}_candidates.csv")  # the whole uid, dots and all
    b = pd.read_csv(tmp_path / "b" / f"{mhd.stem}_candidates.csv")
    assert len(a) == len(b) > 0
    # NIfTI stores the spacing in float32: on the working grid the interpolation weights differ
    # in the 7th digit, and a voxel's HU can round the other way.
    np.testing.assert_allclose(b["p_nodule"], a["p_nodule"], atol=1e-4)


def test_inference_warns_when_the_candidate_file_has_no_row_for_the_ct(tiny_prepared: Path, trained: Path, tmp_path: Path) -> None:
    mhd = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    other = pd.read_csv(tiny_prepared / "candidates.csv")
    other[other["seriesuid"] != mhd.stem].to_csv(tmp_path / "others.csv", index=False)
    result = run_bundle("run", ["bundles/nodule_cls/configs/inference.json"],
                        {"bundle_root": str(trained), "input": str(mhd), "candidates": str(tmp_path / "others.csv"),
                         "output_dir": str(tmp_path / "out")})
    assert f"no row names series '{mhd.stem}'" in result.stdout + result.stderr  # not a silent empty file
    assert len(pd.read_csv(tmp_path / "out" / f"{mhd.stem}_candidates.csv")) == 0


def test_training_refuses_a_missing_dataset_and_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="make_synthetic_luna.py"):
        run_bundle("training", [TRAIN], _small(tmp_path / "nowhere", tmp_path / "b"))


def test_two_process_training_with_torchrun(tiny_prepared: Path, tmp_path: Path) -> None:
    root = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_bundle("training", [TRAIN, "bundles/nodule_cls/configs/multi_gpu_train.json"],
               _small(tiny_prepared, root), launcher=launcher)
    last = torch.load(root / "models/last.pt", map_location="cpu", weights_only=True)
    assert last["samples_seen"]["count"] == 32  # both ranks' samples, counted once each
    assert len(list((root / "runs").glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs


def test_metadata_has_the_bundle_fields_and_matches_the_network() -> None:
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    required = {"version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors", "copyright", "network_data_format"}
    assert required <= set(meta)
    assert meta["version"] in meta["changelog"]
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    net = parser.get_parsed_content("network_def")
    out = net.eval()(torch.zeros(2, image["num_channels"], *image["spatial_shape"]))
    assert tuple(out.shape) == (2, pred["num_channels"])


def test_verify_net_in_out_and_torchscript_export(trained: Path, tmp_path: Path) -> None:
    common = ["--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "train.json")]
    verify = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", *common]
    subprocess.run(verify, cwd=REPO, check=True, capture_output=True, timeout=120)
    ts = tmp_path / "model.ts"
    export = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts),
              "--ckpt_file", str(trained / "models/model.pt"), *common]
    subprocess.run(export, cwd=REPO, check=True, capture_output=True, timeout=120)
    scripted = torch.jit.load(str(ts))
    assert tuple(scripted(torch.zeros(1, 1, 32, 48, 48)).shape) == (1, 2)


@pytest.mark.parametrize("bundle", ["nodule_cls", "nodule_malignancy"])
@pytest.mark.parametrize(("epoch_samples", "replicas", "steps"), [(500, 1, 31), (512, 2, 16), (500, 2, 15)])
def test_schedule_length_is_the_batches_each_process_really_runs(
    tiny_prepared: Path, bundle: str, epoch_samples: int, replicas: int, steps: int
) -> None:
    # drop_last floors the batches, and each of N processes runs 1/N of the epoch: a cosine
    # planned for more steps than that would end halfway down
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(REPO / f"bundles/{bundle}/configs/train.json")
    parser.update({"dataset_dir": str(tiny_prepared), "epoch_samples": epoch_samples, "batch_size": 16,
                   "train#sampler#num_replicas": replicas, "schedule": "warmup_cosine", "from_scratch": True})
    assert parser.get_parsed_content("steps_per_epoch") == steps == len(parser.get_parsed_content("train#dataloader"))
