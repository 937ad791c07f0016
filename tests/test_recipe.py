"""The training recipe in miniature: every step from nothing, resumed after a stop, and the record
it leaves with the weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lungmonai.recipe import STEPS, _parse_override
from lungmonai.recipe_record import check_shipped, sha256
from lungmonai.synth.heldout import check_held_out

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = ["--override", "nodule_cls.epochs=1", "--override", "nodule_cls.epoch_samples=64",
        "--override", "nodule_seg.epochs=1", "--override", "nodule_seg.epoch_samples=64",
        "--override", "nodule_seg.val_interval=1",
        "--override", "nodule_malignancy.epochs=1", "--override", "nodule_malignancy.epoch_samples=32"]


def _bundles(root: Path) -> Path:
    bundles = root / "bundles"
    shutil.copytree(REPO / "bundles", bundles, ignore=shutil.ignore_patterns("models", "runs", "eval", "output"))
    settings = json.loads((bundles / "recipe.json").read_text())
    settings["dataset"].update(dir=str(root / "dev"), mode="small", series=8)
    settings["heldout"].update(dir=str(root / "heldout"), mode="small", series=3)
    settings["bootstrap"] = 20
    (bundles / "recipe.json").write_text(json.dumps(settings))
    return bundles


def _recipe(root: Path, bundles: Path, steps: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lungmonai.recipe", "--bundles_dir", str(bundles), "--out", str(root / "out"),
           "--workers", "2", "--parallel", "yes", "--steps", ",".join(steps), *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUNGMONAI_PROGRESS": "0"}
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
    return result


def test_the_recipe_runs_every_step_resumes_after_a_stop_and_records_the_weights(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path)
    _recipe(tmp_path, bundles, ["generate", "check", "prepare", "classifier"])
    first = sha256(bundles / "nodule_cls/models/last.pt")

    # The second run is asked for everything: what is done is skipped, the rest runs.
    result = _recipe(tmp_path, bundles, list(STEPS))
    for step in ("generate", "check", "prepare", "classifier"):
        assert f"{step}: done on" in result.stdout
    assert sha256(bundles / "nodule_cls/models/last.pt") == first, "the finished classifier was trained again"
    # The classifier shipped is the one fine-tuned on the pipeline's mined false components.
    assert sha256(bundles / "nodule_cls/models/model.pt") == sha256(bundles / "nodule_cls/models/hard_negatives/model.pt")
    # (The miniature segmentation may find nothing to mine; tests/classification/test_mining.py
    # checks what is mined.)
    mined = pd.read_csv(tmp_path / "dev/prepared/candidates_mined.csv")
    assert list(mined.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "class"] and (mined["class"] == 0).all()
    state = json.loads((tmp_path / "out/state.json").read_text())
    assert set(state["steps"]) == set(STEPS)
    assert all(step["seconds"] >= 0 for step in state["steps"].values())

    # The operating point chosen on val is in the contract every entry point reads.
    point = state["steps"]["operating_point"]
    contract = json.loads((bundles / "contract.json").read_text())
    assert contract["pipeline"]["nodule_threshold"] == point["threshold"]
    assert point["fp_per_scan"] <= 1.0
    # So is the malignancy threshold, unless val found no malignant nodule to choose it on.
    malignancy = state["steps"]["malignancy_threshold"]
    if "skipped" in malignancy:
        assert contract["pipeline"]["malignancy_threshold"] == json.loads((REPO / "bundles/contract.json").read_text())["pipeline"]["malignancy_threshold"]
    else:
        assert contract["pipeline"]["malignancy_threshold"] == malignancy["threshold"] and malignancy["recall"] >= 0.9

    # Each trained bundle's metadata names its weights' hash, data, recipe and held-out figures.
    for bundle in ("nodule_cls", "nodule_seg", "nodule_malignancy"):
        metadata = json.loads((bundles / bundle / "configs/metadata.json").read_text())
        training = metadata["training"]
        assert training["sha256"] == sha256(bundles / bundle / "models/model.pt")
        assert training["dataset"]["seed"] == 0 and training["dataset"]["mode"] == "small"
        assert training["samples_seen"] > 0 and training["wall_seconds"] >= 0
        assert training["overrides"]["epochs"] == 1
        assert metadata["eval_metrics"]["heldout_cpm_ci"] is not None
        assert check_shipped(bundles, bundle) == []
    cls_training = json.loads((bundles / "nodule_cls/configs/metadata.json").read_text())["training"]
    assert cls_training["hard_negatives"]["mined_negatives"] == len(mined)

    # The demo analyses a held-out sample with the weights the bundles now ship.
    demo = subprocess.run([sys.executable, "-m", "lungmonai.demo", "--bundles_dir", str(bundles), "--series", "2",
                           "--dataset_dir", str(tmp_path / "demo_heldout"), "--out", str(tmp_path / "demo_out")],
                          cwd=tmp_path, env={**os.environ, "LUNGMONAI_PROGRESS": "0"}, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "held-out CTs" in demo.stdout and "CPM " in demo.stdout and "showing the training path" not in demo.stdout
    assert (tmp_path / "demo_out/reports/index.html").is_file()
    assert check_held_out(tmp_path / "demo_heldout") == "selection of 8 series, seed 0"

    # A changed weights file no longer matches its record.
    (bundles / "nodule_seg/models/model.pt").write_bytes(b"not the trained weights")
    assert any("sha256" in p for p in check_shipped(bundles, "nodule_seg"))


def test_a_dataset_of_other_settings_is_refused_not_trained_on(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/manifest.json").write_text(json.dumps({"series": [{}] * 3, "seed": 5, "mode": "small"}))
    cmd = [sys.executable, "-m", "lungmonai.recipe", "--bundles_dir", str(bundles), "--out", str(tmp_path / "out"),
           "--steps", "generate"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "3 series, seed 5" in result.stderr and "Traceback" not in result.stderr


def test_overrides_name_a_bundle_key_and_a_json_value() -> None:
    assert _parse_override("nodule_cls.epochs=4") == ("nodule_cls", "epochs", 4)
    assert _parse_override("nodule_seg.precision=bf16") == ("nodule_seg", "precision", "bf16")
    with pytest.raises(Exception, match="BUNDLE.KEY=VALUE"):
        _parse_override("epochs=4")


def test_a_malignant_recall_out_of_range_is_an_error_not_a_skipped_step(tmp_path: Path) -> None:
    from lungmonai.recipe import Recipe, _malignancy_threshold

    bundles = _bundles(tmp_path)
    settings = json.loads((bundles / "recipe.json").read_text())
    settings["operating_point"]["malignant_recall"] = 90
    with pytest.raises(ValueError, match="recipe.json: operating_point.malignant_recall must be in"):
        _malignancy_threshold(Recipe(bundles, tmp_path / "out", settings))


def _val_detections(root: Path, malignant: list[bool], p_image: list[float]) -> None:
    """A val evaluation's detections.csv, one finding at each nodule (P(nodule) 0.9), and the tables."""
    from tests.helpers import write_nodule_tables

    uids = [f"s{k}" for k in range(len(malignant))]
    (root / "dev").mkdir(exist_ok=True)
    write_nodule_tables(root / "dev", uids, [10.0] * len(uids), malignant)
    (root / "out/val").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"seriesuid": uids, "coordX": 0.0, "coordY": 0.0, "coordZ": 0.0, "probability": 0.9, "p_nodule": 0.9,
                  "p_malignant": p_image, "p_malignant_image": p_image, "diameter_mm": 10.0}
                 ).to_csv(root / "out/val/detections.csv", index=False)


def test_the_malignancy_step_writes_its_choice_and_skips_only_for_want_of_malignant_nodules(tmp_path: Path) -> None:
    from lungmonai.pipeline.operating import write_threshold
    from lungmonai.recipe import Recipe, _malignancy_threshold

    bundles = _bundles(tmp_path)
    (bundles / "nodule_malignancy/configs/size_fusion.json").unlink()  # the image model's own probability
    recipe = Recipe(bundles, tmp_path / "out", json.loads((bundles / "recipe.json").read_text()))
    before = json.loads((bundles / "contract.json").read_text())["pipeline"]["malignancy_threshold"]

    # Ten malignant nodules rated 0.95 .. 0.05 and two benign: recall 0.9 asks for the 9th.
    _val_detections(tmp_path, [True] * 10 + [False] * 2, [round(0.95 - 0.1 * k, 2) for k in range(10)] + [0.5, 0.01])
    point = _malignancy_threshold(recipe)
    assert point["threshold"] == pytest.approx(0.15) and point["recall"] == pytest.approx(0.9)
    assert point["benign_called_malignant"] == pytest.approx(0.5)
    assert json.loads((bundles / "contract.json").read_text())["pipeline"]["malignancy_threshold"] == point["threshold"]

    # No malignant nodule found on val: the step is skipped and the threshold left as it was.
    write_threshold(bundles, "malignancy_threshold", before)
    _val_detections(tmp_path, [False] * 3, [0.2, 0.4, 0.6])
    assert "skipped" in _malignancy_threshold(recipe)
    assert json.loads((bundles / "contract.json").read_text())["pipeline"]["malignancy_threshold"] == before

    # A broken size fusion is an error, not a reason to skip.
    (bundles / "nodule_malignancy/configs/size_fusion.json").write_text('{"use": true}')
    with pytest.raises(ValueError, match="size_fusion.json"):
        _malignancy_threshold(recipe)
