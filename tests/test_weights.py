"""load_weights: every .pt the package loads is data; a file that names code is refused unrun."""

from __future__ import annotations

import pytest
import torch

from lungmonai.weights import UnsafeCheckpointError, check_plain, load_weights
from tests.helpers import CodePayload


def test_plain_weights_load(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2), "epoch": 3, "name": "x", "lr": [0.1, None]}, path)
    state = load_weights(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.ones(2))


def test_code_in_a_weights_file_does_not_run(tmp_path):
    path, marker = tmp_path / "model.pt", tmp_path / "payload-ran"
    torch.save(CodePayload(marker), path)
    with pytest.raises(UnsafeCheckpointError, match=f"{path}: not a plain checkpoint"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("loader", ["classification", "segmentation", "malignancy", "finetune"])
def test_every_model_loader_refuses_code(tmp_path, loader):
    path, marker = tmp_path / "model.pt", tmp_path / "payload-ran"
    torch.save({"model": CodePayload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError):
        if loader == "classification":
            from lungmonai.classification.inference import load_network
            from lungmonai.classification.network import LunaModel
            load_network(LunaModel(), path)
        elif loader == "segmentation":
            from lungmonai.segmentation.inference import load_segmenter
            from pathlib import Path
            load_segmenter(Path(__file__).parents[1] / "bundles/nodule_seg", ckpt_path=path)
        elif loader == "malignancy":
            from lungmonai.classification.network import LunaModel
            from lungmonai.malignancy.ensemble import load_weights as load_malignancy
            load_malignancy(LunaModel(), path)
        else:
            from lungmonai.classification.network import LunaModel
            from lungmonai.malignancy.finetune import load_classifier_weights
            load_classifier_weights(LunaModel(), path)
    assert not marker.exists()


def test_check_plain_names_the_object():
    check_plain({"a": [1, 2.0, "s", None, torch.zeros(1), (torch.float32, torch.device("cpu"))]})
    with pytest.raises(TypeError, match=r"state\['a'\]\[1\] is a object"):
        check_plain({"a": [1, object()]}, "state")


def test_a_training_starts_from_the_weights_it_is_given(tmp_path: Path) -> None:
    from lungmonai.weights import start_from

    trained = torch.nn.Linear(3, 2)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    fresh = start_from(torch.nn.Linear(3, 2), tmp_path / "model.pt")
    assert torch.equal(fresh.weight, trained.weight)
    untouched = torch.nn.Linear(3, 2)
    assert start_from(untouched, None) is untouched
    with pytest.raises(FileNotFoundError, match="missing.pt: init_weights not found"):
        start_from(torch.nn.Linear(3, 2), tmp_path / "missing.pt")
