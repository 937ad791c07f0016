"""Boolean switches typed on the command line reach the configs as strings."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from lungmonai.config import compute_threads, flag
from tests.bundles.conftest import REPO


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("false", False), ("False", False),
                                             ("true", True), ("off", False), ("1", True), (0, False)])
def test_flag_reads_what_users_type(value: object, expected: bool) -> None:
    assert flag(value) is expected


def test_flag_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="boolean"):
        flag("maybe")


@pytest.mark.parametrize("typed", ["false", False])
def test_augmentation_switch_typed_false_turns_flips_off(typed: object) -> None:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/nodule_cls/configs/train.json"))
    parser.update({"augment_flip": typed, "augment_noise": typed})
    flips = [t for t in parser.get_parsed_content("augmentation") if type(t).__name__ == "RandFlipd"]
    assert len(flips) == 3 and all(t.prob == 0.0 for t in flips)
    noise = [t for t in parser.get_parsed_content("augmentation") if type(t).__name__ == "RandGaussianNoiseTorchd"]
    assert noise[0].prob == 0.0


@pytest.mark.parametrize("typed", ["false", False])
def test_affine_switches_typed_false_turn_rotation_and_scale_off(typed: object) -> None:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/nodule_cls/configs/train.json"))
    parser.update({"augment_rotate": typed, "augment_scale": typed})
    (affine,) = [t for t in parser.get_parsed_content("augmentation") if type(t).__name__ == "RandInPlaneAffined"]
    assert affine.rotate_range == 0.0 and not affine.scale_range.any()
    assert affine.prob == 1.0 and affine.translate_range.tolist() == pytest.approx([1.6, 2.4, 2.4])  # offset still on


@pytest.mark.parametrize("bundle", ["nodule_cls", "nodule_malignancy"])
def test_training_step_runs_through_the_autocast_inferer(bundle: str) -> None:
    parser = ConfigParser()
    parser.read_config(str(REPO / f"bundles/{bundle}/configs/train.json"))
    inferer = parser.get_parsed_content("train#inferer")
    assert type(inferer).__name__ == "AutocastInferer" and inferer.precision == "auto"
    # Validation stays float32.
    assert type(parser.get_parsed_content("validate#inferer")).__name__ == "SimpleInferer"


def test_training_threads_leave_a_core_per_loader_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert compute_threads(0, 1) == 3
    assert compute_threads(0, 8) == 1  # never fewer than one
    assert compute_threads(2, 1) == 2  # an explicit choice wins


def test_segmentation_switches_typed_false_turn_batch_augmentation_off() -> None:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/nodule_seg/configs/train.json"))
    parser.update({"augment_flip": "false", "augment_rotate": "false", "augment_scale": "false", "augment_noise": "off"})
    aug = parser.get_parsed_content("augmentation")
    assert (aug.flip, aug.rotate, aug.scale_range, aug.noise_std) == (False, False, 0.0, 0.0)
    assert parser.get_parsed_content("train#trainer#prepare_batch").augment is aug


@pytest.mark.parametrize("typed, shown", [("false", False), ("False", False), ("true", True), (False, False)])
def test_progress_bars_typed_false_are_off(typed: object, shown: bool) -> None:
    from ignite.handlers import ProgressBar

    from lungmonai.engines import training_handlers, validation_handlers

    train = training_handlers(validator=None, checkpoint_path="last.pt", state={}, progress_bars=typed)
    val = validation_handlers(ckpt_dir=None, progress_bars=typed)
    assert any(isinstance(h, ProgressBar) for h in train) is shown
    assert any(isinstance(h, ProgressBar) for h in val) is shown
    assert not any(isinstance(h, ProgressBar) for h in training_handlers(
        validator=None, checkpoint_path="last.pt", state={}, progress_bars=True, is_main_process=False))


@pytest.mark.parametrize("bundle", ["nodule_cls", "nodule_seg", "nodule_malignancy"])
@pytest.mark.parametrize("config", ["train.json", "evaluate.json"])
def test_every_engine_of_the_bundles_follows_the_progress_switch(bundle: str, config: str) -> None:
    parser = ConfigParser()
    configs = [REPO / f"bundles/{bundle}/configs/train.json"]
    if config != "train.json":
        configs.append(REPO / f"bundles/{bundle}/configs/{config}")
    parser.read_config([str(c) for c in configs])
    engines = ["validate#handlers"] + (["train#handlers"] if config == "train.json" else [])
    for handlers in engines:
        assert parser[f"{handlers}#_target_"].startswith("lungmonai.engines."), handlers
        assert parser[f"{handlers}#progress_bars"] == "@progress_bars", handlers


def test_a_copy_of_the_configs_leaves_the_weights_and_what_was_fitted_to_them(tmp_path: Path) -> None:
    from lungmonai.config import copy_configs
    from lungmonai.malignancy.size_fusion import FUSION_FILE

    source = tmp_path / "source"
    for name in ("contract.json", "nodule_cls/configs/train.json", "nodule_cls/models/model.pt",
                 "nodule_cls/runs/events", "nodule_cls/eval/metrics.json", str(FUSION_FILE), "nodule_cls/docs/README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x")
    copy_configs(source, tmp_path / "copy")
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == ["contract.json", "nodule_cls/configs/train.json", "nodule_cls/docs/README.md"]
