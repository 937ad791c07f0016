"""``lungmonai import-book-checkpoint``: book ``.state`` files (built here to the book's key
layout, small and synthetic) become bundles the pipeline loads, giving the book network's outputs.

The reference for the classifier is written out with ``torch.nn.functional`` from the book's
description (batch norm on raw HU, four blocks of two 3x3x3 convolutions + ReLU + 2x2x2 max-pool,
a linear head) and reads the book's tensors under the book's names: nothing of the import is
shared with it. The real published checkpoints are imported only when they are on this machine.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lungmonai.book import BookSegUNet, classifier_key_map, import_book_checkpoint
from lungmonai.book.checkpoint import BOOK_PIPELINE, segmenter_key_map
from lungmonai.classification.inference import load_network
from lungmonai.cli import main
from lungmonai.config import contract, network
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.segmentation.inference import load_segmenter, scale_hu, segment_ct
from lungmonai.weights import load_weights

REPO = Path(__file__).resolve().parents[2]
# A checkout of the book's repository (bench/bench_book_heldout.py takes the same path); its
# published checkpoints sit under data/part2/models. Without one the test below is skipped.
BOOK_DIR = Path("/tmp/book/data/part2/models")
REAL_CLS = BOOK_DIR / "cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state"
REAL_SEG = BOOK_DIR / "seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state"

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, n: int, gen: torch.Generator, hu_stats: bool = False) -> dict[str, torch.Tensor]:
    mean = -600 + 20 * torch.randn(n, generator=gen) if hu_stats else 0.1 * torch.randn(n, generator=gen)
    var = 1.6e5 * (1 + 0.1 * torch.rand(n, generator=gen)) if hu_stats else 0.5 + torch.rand(n, generator=gen)
    return {f"{prefix}.weight": 1 + 0.2 * torch.randn(n, generator=gen), f"{prefix}.bias": 0.1 * torch.randn(n, generator=gen),
            f"{prefix}.running_mean": mean, f"{prefix}.running_var": var,
            f"{prefix}.num_batches_tracked": torch.tensor(1234)}


def book_classifier_state(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """The book's LunaModel keys and shapes (8 base channels, 32x48x48 crops), random values."""
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict(_bn("tail_batchnorm", 1, gen, hu_stats=True))
    widths = [1, 8, 16, 32, 64]
    for block in range(1, 5):
        cin, cout = widths[block - 1], widths[block]
        for conv, fan_in in ((1, cin), (2, cout)):
            state[f"block{block}.conv{conv}.weight"] = torch.randn(cout, fan_in, 3, 3, 3, generator=gen) * (2 / (27 * fan_in)) ** 0.5
            state[f"block{block}.conv{conv}.bias"] = 0.05 * torch.randn(cout, generator=gen)
    state["head_linear.weight"] = torch.randn(2, 1152, generator=gen) * (1 / 1152) ** 0.5
    state["head_linear.bias"] = 0.1 * torch.randn(2, generator=gen)
    return state


def book_segmenter_state(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """The book's UNetWrapper keys and shapes (7 slices, depth 3, width factor 4: 16, 32, 64
    channels), in the published checkpoint's order, with random values."""
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict(_bn("input_batchnorm", 7, gen, hu_stats=True))

    def conv(key: str, shape: tuple[int, ...], fan_in: int) -> None:
        state[f"{key}.weight"] = torch.randn(shape, generator=gen) * (2 / fan_in) ** 0.5
        out_channels = shape[1] if key.endswith(".up") else shape[0]  # a transposed convolution is (in, out, ...)
        state[f"{key}.bias"] = 0.05 * torch.randn(out_channels, generator=gen)

    def block(prefix: str, cin: int, cout: int) -> None:  # conv, ReLU, BN, conv, ReLU, BN
        conv(f"{prefix}.block.0", (cout, cin, 3, 3), 9 * cin)
        state.update(_bn(f"{prefix}.block.2", cout, gen))
        conv(f"{prefix}.block.3", (cout, cout, 3, 3), 9 * cout)
        state.update(_bn(f"{prefix}.block.5", cout, gen))

    for level, (cin, cout) in enumerate(((7, 16), (16, 32), (32, 64))):
        block(f"unet.down_path.{level}", cin, cout)
    for level, (cin, cout) in enumerate(((64, 32), (32, 16))):
        conv(f"unet.up_path.{level}.up", (cin, cout, 2, 2), 4 * cin)
        block(f"unet.up_path.{level}.conv_block", cin, cout)
    conv("unet.last", (1, 16, 1, 1), 16)
    return state


def write_book_file(path: Path, model_state: dict, model_name: str | None, **extra) -> Path:
    state = {"model_state": dict(model_state), "optimizer_state": {"state": {}, "param_groups": []},
             "epoch": 7, "totalTrainingSamples_count": 350000, **extra}
    if model_name is not None:
        state["model_name"] = model_name
        state["optimizer_name"] = "SGD"
    torch.save(state, path)
    return path


def book_classifier_logits(state: dict[str, torch.Tensor], hu: torch.Tensor) -> torch.Tensor:
    """The book's classifier on HU clipped to [-1000, 1000] (eval mode), from its own keys."""
    x = F.batch_norm(hu.clamp(-1000, 1000), state["tail_batchnorm.running_mean"], state["tail_batchnorm.running_var"],
                     state["tail_batchnorm.weight"], state["tail_batchnorm.bias"], training=False, eps=1e-5)
    for block in range(1, 5):
        for conv in (1, 2):
            x = F.relu(F.conv3d(x, state[f"block{block}.conv{conv}.weight"], state[f"block{block}.conv{conv}.bias"], padding=1))
        x = F.max_pool3d(x, 2, 2)
    return F.linear(x.reshape(len(x), -1), state["head_linear.weight"], state["head_linear.bias"])


@pytest.fixture(scope="module")
def book_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("book")
    return {
        "cls": write_book_file(root / "cls_synthetic.best.state", book_classifier_state(0), "LunaModel"),
        "malignancy": write_book_file(root / "mal_synthetic.best.state", book_classifier_state(1), "LunaModel"),
        "seg": write_book_file(root / "seg_synthetic.best.state", book_segmenter_state(2), "UNetWrapper",
                               sys_argv=["p2ch13/training.py", "--epochs", "3"], time="2020-01-26 20:08:07"),
    }


@pytest.fixture(scope="module")
def imported(book_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "book_bundles"
    for stage in ("cls", "seg", "malignancy"):
        import_book_checkpoint(book_files[stage], stage, out, bundles_dir=REPO / "bundles")
    return out


def _crops(seed: int, n: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 32, 48, 48, generator=gen) * 450 - 450).round()


def test_classifier_keys_are_mapped_by_name_and_only_the_head_is_renamed() -> None:
    keys = classifier_key_map()
    assert len(keys) == 23
    assert {k: v for k, v in keys.items() if k != v} == {"head_linear.weight": "head.weight", "head_linear.bias": "head.bias"}
    assert sorted(keys.values()) == sorted(network(contract(REPO / "bundles"), "classifier").state_dict())


def test_cls_import_gives_the_book_networks_logits(imported: Path, book_files: dict[str, Path]) -> None:
    settings = contract(imported)
    classifier = load_network(network(settings, "classifier"), imported / "nodule_cls/models/model.pt")
    book_state = torch.load(book_files["cls"], weights_only=True)["model_state"]
    hu = _crops(0)
    with torch.no_grad():
        ours = classifier(scale_hu(hu, settings["hu_window"]))
    reference = book_classifier_logits(book_state, hu)
    assert reference.abs().max() > 0.1  # not a trivially zero network
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_malignancy_import_goes_to_the_malignancy_bundle(imported: Path, book_files: dict[str, Path]) -> None:
    state = load_weights(imported / "nodule_malignancy/models/model.pt")
    book_state = torch.load(book_files["malignancy"], weights_only=True)["model_state"]
    torch.testing.assert_close(state["head.weight"], book_state["head_linear.weight"])
    classifier = load_network(network(contract(imported), "classifier"), imported / "nodule_malignancy/models/model.pt")
    hu = _crops(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(classifier(scale_hu(hu)), book_classifier_logits(book_state, hu), rtol=1e-4, atol=1e-4)


def test_segmentation_network_loads_the_book_layout_strictly() -> None:
    state = book_segmenter_state(3)
    assert len(state) == 81 and list(state) == list(segmenter_key_map())
    net = BookSegUNet(in_channels=7, out_channels=1, channels=(16, 32, 64), output="logits")
    net.load_state_dict(state, strict=True)
    prob_net = BookSegUNet(output="probabilities")
    prob_net.load_state_dict(state, strict=True)
    x = torch.randn(2, 7, 32, 48)
    with torch.no_grad():
        logits = net.eval()(x)
        assert logits.shape == (2, 1, 32, 48)
        torch.testing.assert_close(prob_net.eval()(x), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 7, 30, 48))
    with pytest.raises(ValueError, match="output"):
        BookSegUNet(output="sigmoid")


def test_seg_import_gives_the_book_networks_probabilities(imported: Path, book_files: dict[str, Path]) -> None:
    segmenter, settings = load_segmenter(imported / "nodule_seg", imported / "nodule_seg/models/model.pt")
    assert isinstance(segmenter, BookSegUNet) and segmenter.output == "logits"
    assert settings["grid_spacing_xyz"] is None and settings["context"] == 3
    book = BookSegUNet(output="probabilities")  # the book's network with its sigmoid, read on raw HU
    book.load_state_dict(torch.load(book_files["seg"], weights_only=True)["model_state"], strict=True)
    gen = torch.Generator().manual_seed(4)
    hu = (torch.randn(2, 7, 24, 32, generator=gen) * 450 - 450).clamp(-1000, 1000)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(segmenter(scale_hu(hu))), book.eval()(hu), rtol=1e-4, atol=1e-5)


def test_written_bundles_load_through_the_pipeline_and_record_the_import(imported: Path, book_files: dict[str, Path]) -> None:
    from lungmonai.malignancy.size_fusion import FUSION_FILE
    from lungmonai.pipeline import analyze_ct, load_models, pipeline_settings

    models = load_models(imported, device="cpu")
    assert isinstance(models.segmenter, BookSegUNet) and models.malignancy is not None
    # the project's size fusion recalibrates the project's malignancy model: not copied
    assert not (imported / FUSION_FILE).exists() and models.size_fusion is None
    settings = contract(imported)
    assert settings["grid_spacing_xyz"] is None and settings["crop_shape"] == [32, 48, 48]
    assert settings["hu_window"] == [-1000.0, 1000.0] and settings["seg_context"] == 3
    assert settings["networks"]["segmenter"]["_target_"] == "lungmonai.book.BookSegUNet"
    assert {k: settings["pipeline"][k] for k in BOOK_PIPELINE} == BOOK_PIPELINE
    schema = json.loads((REPO / "bundles/metadata_schema.json").read_text())
    for stage, bundle in (("cls", "nodule_cls"), ("seg", "nodule_seg"), ("malignancy", "nodule_malignancy")):
        metadata = json.loads((imported / bundle / "configs/metadata.json").read_text())
        jsonschema.validate(metadata, schema)
        assert metadata["grid_spacing_xyz"] is None and "training" not in metadata and "eval_metrics" not in metadata
        record = metadata["imported_from"]
        assert record["file"] == book_files[stage].name and record["stage"] == stage
        assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
        assert record["book_epoch"] == 7 and record["book_training_samples"] == 350000
        assert record["book_preprocessing"] == {"hu_clip": [-1000, 1000], "grid_spacing_xyz": None,
                                                "seg_context_slices": 7, "crop_shape": [32, 48, 48]}
        assert record["reproduces_book"] and record["differs_from_book"]
    assert "logits" in json.loads((imported / "nodule_seg/configs/metadata.json").read_text())["imported_from"]["output"]
    # One small CT through the whole analysis with the imported networks and the book's settings.
    hu = np.full((12, 40, 40), -850, dtype=np.int16)
    hu[5:8, 18:23, 18:23] = 40
    ct = CTVolume(hu=hu, geometry=Geometry(origin_xyz=(0, 0, 0), spacing_xyz=(0.7, 0.7, 1.25)),
                  source=Path("synthetic.mhd"), series_uid="1.2.3")
    analysis = analyze_ct(ct, models, pipeline_settings(imported))
    assert analysis.mask.shape == hu.shape and "p_nodule" in analysis.candidates.columns
    prob = segment_ct(ct, models.segmenter, restrict_to_lungs=False)
    assert prob.shape == hu.shape and np.all((prob >= 0) & (prob <= 1))


def _refused(tmp_path: Path, model_state: dict, stage: str, model_name: str | None = None, **extra) -> str:
    path = write_book_file(tmp_path / "book.state", model_state, model_name, **extra)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as error:
        import_book_checkpoint(path, stage, out, bundles_dir=REPO / "bundles")
    assert not out.exists(), "a refused checkpoint must not leave a half-written folder"
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_wrong_stage_is_refused_naming_what_says_so(tmp_path: Path) -> None:
    seg, cls = book_segmenter_state(), book_classifier_state()
    message = _refused(tmp_path, seg, "cls")
    assert "a book segmentation checkpoint (model_state has 'input_batchnorm.weight')" in message
    assert "--stage seg" in message
    assert "'tail_batchnorm.weight'" in _refused(tmp_path, cls, "seg") and "--stage cls" in _refused(tmp_path, cls, "seg")
    message = _refused(tmp_path, cls, "seg", "LunaModel")
    assert "model_name is 'LunaModel'" in message and "--stage cls or --stage malignancy" in message
    assert "model_name is 'UNetWrapper'" in _refused(tmp_path, seg, "malignancy", "UNetWrapper")
    assert "sys_argv has '--malignant'" in _refused(tmp_path, cls, "cls", "LunaModel",
                                                     sys_argv=["p2ch14/training.py", "--malignant", "--finetune", "x"])
    assert "sys_argv has no '--malignant'" in _refused(tmp_path, cls, "malignancy", "LunaModel", sys_argv=["p2ch14/training.py"])


def test_missing_extra_and_misshapen_keys_are_refused_naming_the_key(tmp_path: Path) -> None:
    cls = book_classifier_state()
    missing = OrderedDict((k, v) for k, v in cls.items() if k != "head_linear.bias")
    assert "lacks 'head_linear.bias'" in _refused(tmp_path, missing, "cls", "LunaModel")
    extra = OrderedDict(cls, **{"block5.conv1.weight": torch.zeros(1)})
    assert "has 'block5.conv1.weight'" in _refused(tmp_path, extra, "cls", "LunaModel")
    ours = OrderedDict((classifier_key_map()[k], v) for k, v in cls.items())  # a state dict of this project
    assert "lacks 'head_linear.weight'" in _refused(tmp_path, ours, "cls")
    wide = OrderedDict(cls, **{"head_linear.weight": torch.zeros(2, 2304)})
    message = _refused(tmp_path, wide, "cls", "LunaModel")
    assert "model_state['head_linear.weight'] has shape (2, 2304)" in message and "(2, 1152)" in message
    seg = book_segmenter_state()
    seg_missing = OrderedDict((k, v) for k, v in seg.items() if k != "unet.last.bias")
    assert "lacks 'unet.last.bias'" in _refused(tmp_path, seg_missing, "seg", "UNetWrapper")
    seg_extra = OrderedDict(seg, **{"unet.down_path.3.block.0.weight": torch.zeros(1)})
    assert "has 'unet.down_path.3.block.0.weight'" in _refused(tmp_path, seg_extra, "seg", "UNetWrapper")
    path = tmp_path / "not_book.state"
    torch.save({"state_dict": cls}, path)
    with pytest.raises(ValueError, match="no 'model_state' key"):
        import_book_checkpoint(path, "cls", tmp_path / "out2")


def test_the_command_prints_one_line_and_exits_1_on_a_refused_file(tmp_path: Path, book_files: dict[str, Path],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundles"
    assert main(["import-book-checkpoint", str(book_files["seg"]), "--stage", "cls", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lungmonai: error: {book_files['seg']}: model_name is 'UNetWrapper'") and "\n" not in err
    args = ["import-book-checkpoint", str(book_files["cls"]), "--stage", "cls", "--out", str(out), "--bundles", str(REPO / "bundles")]
    assert main(args) == 0
    assert "23 tensors" in capsys.readouterr().out
    assert main(args) == 1  # the weights an import wrote are kept unless --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "contract.json").write_text(json.dumps(contract(REPO / "bundles")))
    assert main(["import-book-checkpoint", str(book_files["cls"]), "--stage", "cls", "--out", str(foreign)]) == 1
    assert "did not make" in capsys.readouterr().err
    assert not (foreign / "nodule_cls").exists()


@pytest.mark.skipif(not (REAL_CLS.is_file() and REAL_SEG.is_file()), reason=f"the book's published checkpoints are not in {BOOK_DIR}")
def test_the_books_published_checkpoints_import(tmp_path: Path) -> None:
    from lungmonai.pipeline import load_models

    out = tmp_path / "book_bundles"
    import_book_checkpoint(REAL_CLS, "cls", out, bundles_dir=REPO / "bundles")
    import_book_checkpoint(REAL_SEG, "seg", out)
    assert len(load_weights(out / "nodule_cls/models/model.pt")) == 23
    assert len(load_weights(out / "nodule_seg/models/model.pt")) == 81
    models = load_models(out, device="cpu", with_malignancy=False)
    assert isinstance(models.segmenter, BookSegUNet)
    record = json.loads((out / "nodule_cls/configs/metadata.json").read_text())["imported_from"]
    assert record["book_epoch"] == 90 and record["book_training_samples"] == 4500000
    seg_record = json.loads((out / "nodule_seg/configs/metadata.json").read_text())["imported_from"]
    assert seg_record["book_epoch"] == 5 and seg_record["book_sys_argv"][-1] == "--num-workers=4"
