"""The README's main command, in miniature: every stage runs from nothing, a rerun skips training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("nodule_cls", "nodule_seg", "nodule_malignancy", "nodule_pipeline")
TINY_RECIPES = {"nodule_cls": {"epochs": 1, "epoch_samples": 64}, "nodule_seg": {"epochs": 1, "epoch_samples": 64},
                "nodule_malignancy": {"epochs": 1, "epoch_samples": 32}}


def _demo(root: Path) -> str:
    cmd = [sys.executable, "-m", "lungmonai.demo", "--train", "--dataset_dir", str(root / "data"),
           "--bundles_dir", str(root / "bundles_copy"), "--out", str(root / "output"), "--series", "10", "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUNGMONAI_PROGRESS": "0"}
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    bars = [line for line in (result.stdout + result.stderr).splitlines() if "%|" in line]
    assert not bars, f"LUNGMONAI_PROGRESS=0 left progress bars in the log, e.g. {bars[0][:200]!r}"
    assert "parsing config_file" not in result.stderr, "MONAI's untrusted-config warning was printed for the project's own configs"
    return result.stdout


def _repo_files_touched_since(start: float) -> list[Path]:
    written = [REPO / "bundles" / b / d for b in BUNDLES for d in ("models", "runs", "eval")] + [REPO / "output"]
    return [f for d in written if d.is_dir() for f in d.rglob("*") if f.is_file() and f.stat().st_mtime >= start]


def test_demo_runs_every_stage_and_a_rerun_skips_training(tmp_path: Path) -> None:
    copy = tmp_path / "bundles_copy"  # any name
    for name in BUNDLES:
        shutil.copytree(REPO / "bundles" / name / "configs", copy / name / "configs")
    for name, recipe in TINY_RECIPES.items():  # the demo's budget is each bundle's demo.json
        (copy / name / "configs/demo.json").write_text(json.dumps(recipe))
    contract = json.loads((REPO / "bundles/contract.json").read_text())
    contract["pipeline"]["max_components"] = 7
    (copy / "contract.json").write_text(json.dumps(contract))
    start = time.time()

    first = _demo(tmp_path)

    assert "max_components=7" in first  # the copy's settings, not the repository's

    for stage in range(1, 9):
        assert f"\n--- {stage}. " in first, f"stage {stage} did not finish:\n{first[-3000:]}"
    assert "truth \\ pred | Complete miss | Filtered out | Predicted benign | Predicted malignant" in first
    assert "CPM " in first and "sensitivity at 1/8..8 FPs/scan" in first
    for name in ("nodule_cls", "nodule_seg", "nodule_malignancy"):
        assert (copy / name / "models/model.pt").is_file(), name
    metrics = json.loads((tmp_path / "output/metrics.json").read_text())
    split = json.loads((tmp_path / "data/prepared/split.json").read_text())
    assert metrics["series"] == sum(part == "test" for part in split["series"].values())
    assert (tmp_path / "output/froc.png").stat().st_size > 0
    assert _repo_files_touched_since(start) == [], "the demo wrote into the repository's bundles or output"

    second = _demo(tmp_path)

    assert "using the existing dataset" in second
    assert second.count("exists and is newer than split.json") == 3
    assert "CPM " in second


def test_demo_refuses_a_bundles_dir_without_the_configs(tmp_path: Path, capsys) -> None:
    from lungmonai.demo import main

    with pytest.raises(SystemExit) as stop:
        main(["--dataset_dir", str(tmp_path / "data"), "--bundles_dir", str(tmp_path / "bundles")])

    assert stop.value.code == 2
    assert "not a bundles folder" in capsys.readouterr().err
    shutil.copy(REPO / "bundles/contract.json", tmp_path / "contract.json")
    with pytest.raises(SystemExit):
        main(["--dataset_dir", str(tmp_path / "data"), "--bundles_dir", str(tmp_path)])
    assert f"{tmp_path} is not a copy of the project's bundles: it lacks nodule_cls/configs/train.json" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_retrained_classifier_makes_the_malignancy_model_train_again(tmp_path: Path, monkeypatch) -> None:
    from lungmonai import demo

    trained: list[str] = []
    monkeypatch.setattr(demo._Run, "bundle", lambda self, bundle, configs, run_id, overrides: trained.append(bundle))
    run = demo._Run(demo._parser().parse_args([]), tmp_path / "data", tmp_path / "bundles", tmp_path / "out")
    files = {name: tmp_path / path for name, path in (("split", "data/prepared/split.json"),
             ("nodule_cls", "bundles/nodule_cls/models/model.pt"),
             ("nodule_malignancy", "bundles/nodule_malignancy/models/model.pt"))}
    for age, name in ((300, "split"), (200, "nodule_cls"), (100, "nodule_malignancy")):
        files[name].parent.mkdir(parents=True)
        files[name].write_text(name)
        os.utime(files[name], (time.time() - age, time.time() - age))

    demo._train_malignancy(run)
    assert trained == []  # fine-tuned after the classifier: current
    os.utime(files["nodule_cls"])  # the classifier is trained again
    demo._train_malignancy(run)
    assert trained == ["nodule_malignancy"]


def test_the_training_copy_leaves_the_shipped_weights_and_their_size_fusion_behind(tmp_path: Path) -> None:
    """`demo --train` trains into a copy of the bundles: the shipped weights are not copied, nor
    the size fusion fitted to them, which would rescale the demo's own malignancy model."""
    from lungmonai.demo import _training_copy
    from lungmonai.malignancy.size_fusion import FUSION_FILE

    assert (REPO / "bundles" / FUSION_FILE).is_file()  # the shipped weights have one
    copy = _training_copy(REPO / "bundles", tmp_path / "copy")
    assert (copy / "contract.json").is_file() and (copy / "nodule_malignancy/configs/train.json").is_file()
    assert not (copy / FUSION_FILE).exists()
    assert not list(copy.glob("*/models"))
