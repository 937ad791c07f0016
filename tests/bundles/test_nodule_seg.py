"""The nodule segmentation bundle, run through `python -m monai.bundle` as a user would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from lungmonai.io import find_series, read_ct
from tests.bundles.conftest import REPO, run_bundle
from tests.helpers import write_reoriented

TRAIN = "bundles/nodule_seg/configs/train.json"
pytestmark = pytest.mark.slow


def _small(dataset: Path, root: Path, **extra: object) -> dict[str, object]:
    # the tiny dataset has no contour masks: labels from annotations by the book's rule
    return {"dataset_dir": str(dataset), "bundle_root": str(root), "epochs": 1, "epoch_samples": 32,
            "batch_size": 8, "num_workers": 0, "label_source": "annotations", **extra}


@pytest.fixture(scope="module")
def trained(tiny_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seg_bundle")
    run_bundle("training", [TRAIN], _small(tiny_prepared, root))
    return root


def test_training_writes_checkpoints_labels_and_tensorboard(trained: Path, tiny_prepared: Path) -> None:
    best = torch.load(trained / "models/model.pt", map_location="cpu", weights_only=True)
    assert any(k.endswith("weight") for k in best)  # a plain state_dict of the U-Net
    last = torch.load(trained / "models/last.pt", map_location="cpu", weights_only=True)
    assert {"network", "optimizer", "samples_seen", "trainer"} <= set(last)
    assert len(last["best_model"]["saved"]) == 1  # the config links the best-model score into the resumable state
    assert last["trainer"]["iteration"] == 4 and last["samples_seen"]["count"] == 32
    assert list((trained / "runs").glob("events.out.tfevents.*"))
    entries = list((tiny_prepared / "prepared/seg_labels/annotations").glob("*/entry.json"))
    split = json.loads((tiny_prepared / "prepared/split.json").read_text())["series"]
    assert len(entries) == sum(part in ("train", "val") for part in split.values())


def test_evaluate_writes_metrics_with_per_nodule_recall(tiny_prepared: Path, trained: Path) -> None:
    run_bundle("evaluating", [TRAIN, "bundles/nodule_seg/configs/evaluate.json"],
               {**_small(tiny_prepared, trained), "eval_parts": ["test"]})
    report = json.loads((trained / "eval/metrics.json").read_text())
    split = json.loads((tiny_prepared / "prepared/split.json").read_text())["series"]
    test_series = {uid for uid, part in split.items() if part == "test"}
    assert report["part"] == "test" and report["parts"] == ["test"] and {n["series_uid"] for n in report["nodules"]} <= test_series
    assert {"dice", "precision", "recall", "nodule_recall", "nodule_reach", "score"} <= set(report["metrics"])
    assert report["metrics"]["nodules_reached"] == sum(n["reached"] for n in report["nodules"])
    assert report["metrics"]["nodules"] == len(report["nodules"])
    assert (trained / "eval/nodule_recall.png").stat().st_size > 0 and (trained / "eval/overlays.png").stat().st_size > 0


def test_inference_writes_probability_and_mask_on_the_ct_grid(tiny_prepared: Path, trained: Path, tmp_path: Path) -> None:
    uid, ct_path = sorted(find_series(tiny_prepared).items())[0]
    run_bundle("run", ["bundles/nodule_seg/configs/inference.json"],
               {"bundle_root": str(trained), "input": str(ct_path), "output_dir": str(tmp_path), "threshold": 0.5})
    ct = read_ct(ct_path)
    mask = read_ct(tmp_path / f"{uid}_mask.nii.gz")
    assert mask.geometry == ct.geometry and mask.hu.shape == ct.hu.shape
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{uid}_prob.nii.gz")))
    assert prob.dtype == np.float32 and prob.shape == ct.hu.shape and 0 <= prob.min() and prob.max() <= 1
    assert np.array_equal(prob >= 0.5, mask.hu.astype(bool))


def test_inference_on_a_flipped_nifti_marks_the_same_voxels_in_patient_space(
    tiny_prepared: Path, trained: Path, tmp_path: Path
) -> None:
    uid, ct_path = sorted(find_series(tiny_prepared).items())[0]
    flipped = tmp_path / "in" / f"{uid}.nii.gz"
    write_reoriented(ct_path, flipped, flips=(True, True, False))
    for source, out in ((ct_path, tmp_path / "a"), (flipped, tmp_path / "b")):
        run_bundle("run", ["bundles/nodule_seg/configs/inference.json"],
                   {"bundle_root": str(trained), "input": str(source), "output_dir": str(out), "threshold": 0.5})
    a, b = (sitk.ReadImage(str(tmp_path / d / f"{uid}_prob.nii.gz")) for d in ("a", "b"))
    # each on its input's own grid (b flipped like its input), the same voxels in patient space
    assert b.GetDirection() == sitk.ReadImage(str(flipped)).GetDirection()
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.Flip(b, (True, True, False))), sitk.GetArrayFromImage(a), atol=1e-6)


def test_training_refuses_a_missing_prepared_directory(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / TRAIN))
    parser.update(_small(tmp_path / "nothing", tmp_path / "root"))
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the expression's error
        parser.get_parsed_content("check_split")
    assert isinstance(failure.value.__cause__, FileNotFoundError) and "prepare_luna.py" in str(failure.value.__cause__)


def test_two_process_training_with_torchrun(tiny_prepared: Path, tmp_path: Path) -> None:
    root = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_bundle("training", [TRAIN, "bundles/nodule_seg/configs/multi_gpu_train.json"], _small(tiny_prepared, root),
               launcher=launcher)
    last = torch.load(root / "models/last.pt", map_location="cpu", weights_only=True)
    assert last["samples_seen"]["count"] == 32  # both ranks' windows, counted once each
    assert len(list((root / "runs").glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs
    assert (root / "models/model.pt").is_file()  # chosen by touched nodules: reach needs one process
    output_bias = [v for k, v in last["network"].items() if k.endswith("bias") and v.numel() == 1][-1]
    assert output_bias.item() < -3.0  # started at logit(output_prior 0.01) = -4.6, as a single-process run
