"""The provenance the recipe writes next to shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lungmonai.recipe_record import check_shipped, sha256, write_pipeline_metrics, write_provenance
from lungmonai.synth.generate import GENERATOR_VERSION

SETTINGS = {"dataset": {"mode": "full", "series": 120, "seed": 0, "fractions": [0.6, 0.4, 0.0]},
            "heldout": {"series": 120, "seed": 1}}
EARLIER = {"weights": "models/model.pt", "samples_seen": 196608, "wall_seconds": 5275.2,
           "dataset": {"generator_version": GENERATOR_VERSION}, "grid_spacing_xyz": [1.0, 1.0, 1.25],
           "machine": {"cores": 2, "gpu": None}}


def _bundle(root: Path) -> Path:
    (root / "contract.json").write_text(json.dumps({"grid_spacing_xyz": [1.0, 1.0, 1.25]}))
    (root / "nodule_cls/configs").mkdir(parents=True)
    (root / "nodule_cls/models").mkdir()
    torch.save({"w": torch.ones(3)}, root / "nodule_cls/models/model.pt")
    training = {**EARLIER, "sha256": sha256(root / "nodule_cls/models/model.pt")}
    metadata = {"version": "1.0", "training": training, "eval_metrics": {"val_cpm": 0.7, "nodule_threshold": 0.9}}
    (root / "nodule_cls/configs/metadata.json").write_text(json.dumps(metadata))
    return root


def _metadata(root: Path) -> dict:
    return json.loads((root / "nodule_cls/configs/metadata.json").read_text())


def test_evaluating_weights_trained_earlier_keeps_how_they_were_made(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    state = {"steps": {"evaluate": {"cpm": 0.66, "cpm_ci": [0.6, 0.72], "malignant_recall": 0.8}}}
    write_provenance(root, "nodule_cls", SETTINGS, state, "classifier")
    metadata = _metadata(root)
    assert metadata["training"]["samples_seen"] == 196608 and metadata["training"]["wall_seconds"] == 5275.2
    assert metadata["eval_metrics"]["heldout_cpm"] == 0.66
    assert metadata["eval_metrics"]["val_cpm"] == 0.7, "the val figures of the same weights were dropped"


def test_new_weights_get_a_new_record_and_lose_the_old_figures(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    torch.save({"w": torch.zeros(3)}, root / "nodule_cls/models/model.pt")
    state = {"steps": {"evaluate": {"cpm": 0.5, "cpm_ci": [0.4, 0.6], "malignant_recall": 0.7}}}
    write_provenance(root, "nodule_cls", SETTINGS, state, "classifier")
    metadata = _metadata(root)
    assert metadata["training"]["sha256"] == sha256(root / "nodule_cls/models/model.pt")
    assert "samples_seen" not in metadata["training"]
    assert "val_cpm" not in metadata["eval_metrics"]


def test_a_classifier_fine_tuned_on_mined_negatives_keeps_its_first_training(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    torch.save({"w": torch.full((3,), 2.0)}, root / "nodule_cls/models/model.pt")
    state = {"steps": {"mine": {"mined": 3456}, "hard_negatives": {"seconds": 1800.0, "finished": "now"}}}
    write_provenance(root, "nodule_cls", SETTINGS, state, "classifier")
    training = _metadata(root)["training"]
    assert training["samples_seen"] == 196608, "the first training's record was lost"
    assert training["sha256"] == sha256(root / "nodule_cls/models/model.pt")
    assert training["hard_negatives"]["mined_negatives"] == 3456
    assert training["hard_negatives"]["wall_seconds"] == 1800.0


def test_new_weights_record_the_working_grid_they_were_trained_on(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    torch.save({"w": torch.zeros(3)}, root / "nodule_cls/models/model.pt")
    write_provenance(root, "nodule_cls", SETTINGS, {"steps": {}}, "classifier")
    assert _metadata(root)["training"]["grid_spacing_xyz"] == [1.0, 1.0, 1.25]
    assert _metadata(root)["grid_spacing_xyz"] == [1.0, 1.0, 1.25], "the bundle's own record of its grid was not updated"
    assert check_shipped(root, "nodule_cls") == []


def test_weights_of_another_grid_than_the_contract_are_refused_with_what_to_do(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    assert check_shipped(root, "nodule_cls") == []
    (root / "contract.json").write_text(json.dumps({"grid_spacing_xyz": [1.5, 1.5, 2.0]}))
    [problem] = check_shipped(root, "nodule_cls")
    assert "[1.0, 1.0, 1.25]" in problem and "[1.5, 1.5, 2.0]" in problem and "rerun the recipe" in problem


def test_the_pipeline_bundle_reports_the_figures_of_the_weights_it_runs(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "nodule_pipeline/configs").mkdir(parents=True)
    (root / "nodule_pipeline/configs/metadata.json").write_text(json.dumps(
        {"version": "0.3.1", "grid_spacing_xyz": [1.5, 1.5, 2.0], "eval_metrics": {"cpm": 0.637}}))
    state = {"steps": {"evaluate": {"cpm": 0.76, "cpm_ci": [0.7, 0.82], "malignant_recall": 0.8,
                                    "fps_per_scan": [0.125, 8.0], "sensitivities": [0.6, 0.82],
                                    "nodules": 193, "never_reached": 25},
                       "operating_point": {"val_cpm": 0.84, "threshold": 0.42, "fp_per_scan": 1.0, "sensitivity": 0.85},
                       "malignancy_threshold": {"threshold": 0.13, "recall": 0.92, "benign_called_malignant": 0.37}}}
    write_pipeline_metrics(root, SETTINGS, state)
    metadata = json.loads((root / "nodule_pipeline/configs/metadata.json").read_text())
    assert "cpm" not in metadata["eval_metrics"], "an earlier model's figure survived"
    assert metadata["eval_metrics"]["heldout_cpm"] == 0.76 and metadata["eval_metrics"]["heldout_never_reached"] == 25
    assert metadata["eval_metrics"]["nodule_threshold"] == 0.42
    assert metadata["eval_metrics"]["malignancy_threshold"] == 0.13 and metadata["eval_metrics"]["val_malignant_recall"] == 0.92
    assert metadata["grid_spacing_xyz"] == [1.0, 1.0, 1.25]
    assert metadata["version"] == "0.3.1"

    # A recipe whose val found no malignant nodule left the threshold alone, and says nothing of it.
    state["steps"]["malignancy_threshold"] = {"skipped": "no malignant nodule among the 3 found"}
    write_pipeline_metrics(root, SETTINGS, state)
    assert "malignancy_threshold" not in json.loads((root / "nodule_pipeline/configs/metadata.json").read_text())["eval_metrics"]


def test_a_resumed_training_records_its_time_over_every_resume(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    torch.save({"w": torch.full((3,), 3.0)}, root / "nodule_cls/models/model.pt")
    # The step's own time is the last process's (the epochs after a resume); the checkpoint's
    # clock holds all of them.
    torch.save({"samples_seen": {"count": 196608, "seconds": 2700.04}}, root / "nodule_cls/models/last.pt")
    state = {"steps": {"classifier": {"seconds": 892.3, "finished": "now"}}}
    write_provenance(root, "nodule_cls", SETTINGS, state, "classifier")
    training = _metadata(root)["training"]
    assert training["wall_seconds"] == 2700.0 and training["samples_seen"] == 196608
