"""What the demo and the recipe share: when a trained model must be made again."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lungmonai.workflow import bundle_command, stale


def test_a_model_is_stale_when_it_or_any_of_its_inputs_is_missing_or_an_input_is_newer(tmp_path: Path) -> None:
    split, classifier, model = (tmp_path / name for name in ("split.json", "classifier.pt", "model.pt"))
    for age, path in ((300, split), (200, model), (100, classifier)):
        path.write_text(path.name)
        os.utime(path, (time.time() - age, time.time() - age))

    assert not stale(model, (split,))
    assert stale(model, (split, classifier))  # the classifier was retrained after the fine-tuning
    assert stale(model, (split, tmp_path / "missing.pt"))
    assert stale(tmp_path / "never_trained.pt", (split,))


def test_a_bundle_runs_as_a_user_types_it_for_a_copy_of_the_bundles(tmp_path: Path) -> None:
    cmd = bundle_command(tmp_path / "copy", tmp_path / "data", "nodule_cls", ("train.json", "recipe.json"), "training",
                         {"epochs": 2, "resume": True, "precision": "bf16"})
    assert cmd[1:5] == ["-m", "monai.bundle", "run", "training"]
    assert cmd[cmd.index("--config_file") + 1] == repr([str(tmp_path / "copy/nodule_cls/configs/train.json"),
                                                        str(tmp_path / "copy/nodule_cls/configs/recipe.json")])
    assert cmd[cmd.index("--bundles_dir") + 1] == str(tmp_path / "copy")
    assert cmd[-6:] == ["--epochs", "2", "--resume", "true", "--precision", "bf16"]
