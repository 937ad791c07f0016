"""The record that travels with shipped weights: each bundle's ``metadata.json`` ``training`` and
``eval_metrics`` sections, written by the recipe's last step.

Weights without their provenance cannot be trusted or reproduced: the record names the data
(generator version and seed), the working grid the weights were trained on, the recipe and its
overrides, how much training it had (samples seen, epochs, wall time), the machine (weights differ
between machines), the file's sha256, and the held-out figures. ``check_shipped`` is what the
tests run against the committed files: weights of another generator version or another grid than
the contract's are refused, since every stage resamples a CT onto the contract's grid and a model
applied at a resolution it never saw fragments nodules (the pipeline README measures it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from lungmonai.cache.atomic import atomic_write_text
from lungmonai.config import contract

WEIGHTS = "models/model.pt"
RESUME = "models/last.pt"
HARD_NEGATIVES_RESUME = "models/hard_negatives/last.pt"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(path: Path) -> dict[str, Any]:
    """Samples seen, epochs run and the training's wall seconds over every resume, from a
    resumable checkpoint (read as plain data only)."""
    if not path.is_file():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    out: dict[str, Any] = {}
    if "samples_seen" in state:
        out["samples_seen"] = int(state["samples_seen"]["count"])
        if "seconds" in state["samples_seen"]:
            out["wall_seconds"] = round(float(state["samples_seen"]["seconds"]), 1)
    trainer = state.get("trainer") or {}
    if "iteration" in trainer and trainer.get("epoch_length"):
        out["epochs"] = int(trainer["iteration"]) // int(trainer["epoch_length"])
    return out


def provenance(bundles_dir: Path, bundle: str, settings: dict[str, Any], state: dict[str, Any], step: str) -> dict[str, Any]:
    """The ``training`` section of ``bundle``'s metadata from the recipe's settings and state."""
    from lungmonai.synth.generate import GENERATOR_VERSION

    bundle_dir = bundles_dir / bundle
    weights = bundle_dir / WEIGHTS
    done = state["steps"].get(step, {})
    data = settings["dataset"]
    return {
        "weights": WEIGHTS,
        "sha256": sha256(weights),
        "size_bytes": weights.stat().st_size,
        "recipe": "python -m lungmonai.recipe",
        "recipe_configs": ["configs/train.json", "configs/recipe.json"],
        "overrides": state.get("overrides", {}).get(bundle, {}),
        "dataset": {"generator": "lungmonai.synth", "generator_version": GENERATOR_VERSION, "mode": data["mode"],
                    "series": data["series"], "seed": data["seed"], "fractions": data["fractions"]},
        "grid_spacing_xyz": contract(bundles_dir)["grid_spacing_xyz"],
        # The checkpoint's clock spans every resume; the step's own time only its last process.
        "wall_seconds": done.get("seconds"),
        **_progress(bundle_dir / RESUME),
        "finished": done.get("finished"),
        "machine": done.get("machine", state.get("machine")),
        **(_hard_negatives(bundle_dir, state) if step == "classifier" else {}),
    }


def _hard_negatives(bundle_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The classifier's second training, on the pipeline's mined false components, when it ran."""
    done = state["steps"].get("hard_negatives")
    if done is None:
        return {}
    return {"hard_negatives": {
        "config": "configs/hard_negatives.json",
        "mined_negatives": state["steps"].get("mine", {}).get("mined"),
        "wall_seconds": done.get("seconds"),
        **_progress(bundle_dir / HARD_NEGATIVES_RESUME),
        "finished": done.get("finished"),
        "machine": done.get("machine", state.get("machine")),
    }}


def held_out_metrics(state: dict[str, Any]) -> dict[str, Any]:
    """The figures every bundle reports: the end-to-end pipeline on the held-out set, and the
    operating points chosen on val."""
    steps = state["steps"]
    out: dict[str, Any] = {}
    if "evaluate" in steps:
        e = steps["evaluate"]
        out.update({"heldout_cpm": e.get("cpm"), "heldout_cpm_ci": e.get("cpm_ci"),
                    "heldout_malignant_recall": e.get("malignant_recall")})
        if "sensitivities" in e:  # recorded by runs since the FROC points were kept
            out.update({"heldout_fps_per_scan": e["fps_per_scan"], "heldout_sensitivities": e["sensitivities"],
                        "heldout_nodules": e["nodules"], "heldout_never_reached": e["never_reached"]})
    if "operating_point" in steps:
        o = steps["operating_point"]
        out.update({"val_cpm": o.get("val_cpm"), "nodule_threshold": o.get("threshold"),
                    "val_fp_per_scan": o.get("fp_per_scan"), "val_sensitivity": o.get("sensitivity")})
    if "threshold" in steps.get("malignancy_threshold", {}):  # chosen, not skipped for want of malignant nodules
        m = steps["malignancy_threshold"]
        out.update({"malignancy_threshold": m["threshold"], "val_malignant_recall": m.get("recall"),
                    "val_benign_called_malignant": m.get("benign_called_malignant")})
    return out


def _same_weights(training: dict[str, Any] | None, weights: Path) -> bool:
    return bool(training) and weights.is_file() and training.get("sha256") == sha256(weights)


def write_provenance(bundles_dir: str | Path, bundle: str, settings: dict[str, Any], state: dict[str, Any], step: str) -> Path:
    """Write ``training`` and ``eval_metrics`` into ``bundle``'s metadata.json, keeping the rest."""
    bundles = Path(bundles_dir)
    path = bundles / bundle / "configs/metadata.json"
    metadata = json.loads(path.read_text())
    bundle_dir = bundles / bundle
    kept = metadata.get("training")
    earlier = step not in state["steps"] and _same_weights(kept, bundle_dir / WEIGHTS)
    # Weights trained by an earlier run (whose state is gone, e.g. on another machine) and only
    # evaluated by this one keep the record of how they were made, and the figures not remeasured;
    # a classifier this run only fine-tuned on mined negatives keeps its first training's record.
    fine_tuned_only = step == "classifier" and step not in state["steps"] and kept and "hard_negatives" in state["steps"]
    if fine_tuned_only:
        metadata["training"] = {**kept, "sha256": sha256(bundle_dir / WEIGHTS),
                                "size_bytes": (bundle_dir / WEIGHTS).stat().st_size,
                                **_hard_negatives(bundle_dir, state)}
    elif not earlier:
        metadata["training"] = provenance(bundles, bundle, settings, state, step)
    metadata["grid_spacing_xyz"] = contract(bundles)["grid_spacing_xyz"]  # the bundle's grid is its weights'
    metrics = held_out_metrics(state)
    if metrics:
        metadata["eval_metrics"] = {**(metadata.get("eval_metrics", {}) if earlier else {}), **metrics}
        metadata["eval_metrics_source"] = _metrics_source(settings)
    return atomic_write_text(path, json.dumps(metadata, indent=4) + "\n")


def _metrics_source(settings: dict[str, Any]) -> str:
    return ("python -m lungmonai.recipe: the end-to-end pipeline with these weights on the held-out set "
            f"({settings['heldout']['series']} LUNA16-resolution series, seed {settings['heldout']['seed']}, "
            "LIDC patients the training data does not use), at the operating point chosen on the val series")


def write_pipeline_metrics(bundles_dir: str | Path, settings: dict[str, Any], state: dict[str, Any]) -> Path:
    """Give the pipeline bundle, which has no weights of its own, the held-out figures of the
    weights it runs, so that its ``eval_metrics`` are never those of an earlier model."""
    bundles = Path(bundles_dir)
    path = bundles / "nodule_pipeline/configs/metadata.json"
    metadata = json.loads(path.read_text())
    metadata["grid_spacing_xyz"] = contract(bundles)["grid_spacing_xyz"]
    metrics = held_out_metrics(state)
    if metrics:
        metadata["eval_metrics"] = metrics
        metadata["eval_metrics_source"] = _metrics_source(settings)
    return atomic_write_text(path, json.dumps(metadata, indent=4) + "\n")


def check_shipped(bundles_dir: str | Path, bundle: str) -> list[str]:
    """Problems with ``bundle``'s shipped weights and their record (empty when they agree)."""
    from lungmonai.synth.generate import GENERATOR_VERSION

    bundle_dir = Path(bundles_dir) / bundle
    metadata = json.loads((bundle_dir / "configs/metadata.json").read_text())
    training = metadata.get("training")
    weights = bundle_dir / WEIGHTS
    if training is None:
        return [f"{bundle}: metadata.json has no training record"]
    problems = []
    if not weights.is_file():
        problems.append(f"{weights} is missing")
    elif sha256(weights) != training["sha256"]:
        problems.append(f"{weights}: sha256 differs from the one metadata.json records")
    if training["dataset"]["generator_version"] != GENERATOR_VERSION:
        problems.append(
            f"{bundle}: weights trained on generator version {training['dataset']['generator_version']}, the generator "
            f"is now version {GENERATOR_VERSION}: rerun the recipe (python -m lungmonai.recipe)")
    grid = contract(bundles_dir)["grid_spacing_xyz"]
    if training.get("grid_spacing_xyz") != grid:
        problems.append(
            f"{bundle}: weights trained on the working grid {training.get('grid_spacing_xyz')} mm, the contract holds "
            f"{grid} mm: rerun the recipe (python -m lungmonai.recipe)")
    return problems
