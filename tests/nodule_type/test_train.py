"""Labels from the readers' ratings, their agreement, and the trainer on a tiny generated dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungmonai.nodule_type import load_model
from lungmonai.nodule_type.evaluate import main as evaluate_main
from lungmonai.nodule_type.train import (
    NoduleCrop,
    is_calcified,
    load_crops,
    main,
    majority_type,
    readers_agreement,
    texture_type,
)
from tests.conftest import TEST_GRID, tests_bundles

REPO = Path(__file__).resolve().parents[2]


def test_texture_ratings_map_to_the_lung_rads_types() -> None:
    assert [texture_type(t) for t in (1, 2, 3, 4, 5)] == ["ground-glass", "ground-glass", "part-solid", "solid", "solid"]
    with pytest.raises(ValueError, match="1-5"):
        texture_type(6)


def test_majority_and_its_tie_break() -> None:
    assert majority_type([5, 4, 3]) == "solid"
    assert majority_type([3, 2, 5, 1]) == "ground-glass"  # two ground-glass calls out of four
    assert majority_type([1, 3]) == "ground-glass"  # tie: median 2 is ground-glass
    assert majority_type([3, 5]) == "solid"  # tie: median 4
    assert majority_type([2, 3, 4]) == "part-solid"  # three-way tie: median 3


def test_calcified_when_at_least_half_the_readers_say_so() -> None:
    assert is_calcified([3, 6]) and is_calcified([3, 3, 6]) and not is_calcified([3, 6, 6])
    assert not is_calcified([6, 6, 6, 6])


def _crop(textures: list[int], calcifications: list[int]) -> NoduleCrop:
    return NoduleCrop("uid", 1, "val", np.zeros((1, 1, 1), np.int16), np.ones((1, 1, 1), bool), np.ones(3),
                      textures, calcifications, 5.0)


def test_each_reader_is_scored_against_the_others() -> None:
    crops = [_crop([5, 5, 1], [6, 6, 6]), _crop([1, 1, 1], [3, 3, 6]), _crop([5], [6])]
    out = readers_agreement(crops, ["solid", "solid", "solid"], [False, True, False])
    assert out["reads"] == 6  # the single-read nodule has no others to be scored against
    readers = out["type"]["readers"]
    # Nodule 1: readers 1 and 2 (solid) face {5, 1}, a tie whose median 3 is part-solid; reader 3
    # (ground-glass) faces {5, 5}, solid: no agreement. Nodule 2: all three agree.
    assert readers["per_class"]["part-solid"] == {"n": 2, "accuracy": 0.0}
    assert readers["per_class"]["solid"] == {"n": 1, "accuracy": 0.0}
    assert readers["per_class"]["ground-glass"] == {"n": 3, "accuracy": 1.0}
    assert readers["accuracy"] == 0.5 and np.array(readers["confusion"]["counts"]).sum() == 6
    model = out["type"]["model"]
    assert model["per_class"]["ground-glass"]["accuracy"] == 0.0  # the model said solid for nodule 2
    calc = out["calcified"]["readers"]["counts"]
    # Nodule 2: each of the first two readers vs {3, 6} (calcified) agrees, the third vs {3, 3} (calcified) does not.
    assert calc == {"tp": 2, "fn": 1, "fp": 0, "tn": 3}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small series (seed 21): the first holds a calcified solid, a solid and a ground-glass
    nodule (TRAIN), the second three solid ones, one calcified (VAL). The split is written as
    prepare_luna.py writes it, without its crop cache, which the trainer does not read."""
    from lungmonai.synth import generate_dataset

    root = tmp_path_factory.mktemp("type_data") / "luna"
    generate_dataset(root, 2, mode="small", seed=21, workers=1, montage=False)
    series = [s["series_uid"] for s in json.loads((root / "manifest.json").read_text())["series"]]
    (root / "prepared").mkdir()
    (root / "prepared/split.json").write_text(json.dumps({"version": 1, "series": {series[0]: "train", series[1]: "val"}}))
    return root


@pytest.mark.slow
def test_trainer_fits_reports_and_reuses_its_crops(tiny_dataset: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out, crops = tmp_path / "model.json", tmp_path / "crops.npz"
    args = ["--dataset_dir", str(tiny_dataset), "--out", str(out), "--crops", str(crops), "--bundles_dir", str(tests_bundles())]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "VAL type, model vs readers' majority" in printed and "each reader vs the majority" in printed
    model = load_model(out)
    assert model.classes == ("solid", "ground-glass")  # no part-solid nodule in TRAIN
    record = model.training
    assert record["counts"]["train"] == {"nodules": 3, "series": 1, "calcified": 1,
                                         "type": {"solid": 2, "part-solid": 0, "ground-glass": 1}}
    assert record["counts"]["val"]["nodules"] == 3 and record["val"]["type"]["n"] == 3
    assert record["val"]["readers_leave_one_out"]["reads"] > 0
    assert record["dataset"]["mode"] == "small" and record["grid_spacing_xyz"] == TEST_GRID
    assert str(tiny_dataset) not in out.read_text()  # no path of this machine in the shipped record
    kept = load_crops(crops, json.loads(str(np.load(crops)["meta"]))["key"])
    assert kept is not None and len(kept) == 6 and all(c.mask.any() for c in kept)
    # Second run: the crops are read back, not measured again, and give the same model.
    again = tmp_path / "again.json"
    assert main(args[:2] + ["--out", str(again)] + args[4:]) == 0
    assert "[1/2]" not in capsys.readouterr().err
    assert json.loads(again.read_text()) == json.loads(out.read_text())
    # The same model scored on every series of the dataset (a held-out set needs no split).
    figures = tmp_path / "figures.json"
    assert evaluate_main(["--dataset_dir", str(tiny_dataset), "--model", str(out), "--bundles_dir", str(tests_bundles()),
                          "--json", str(figures)]) == 0
    scored = json.loads(figures.read_text())
    assert scored["parts"] == "all" and scored["counts"]["nodules"] == 6 and scored["type"]["n"] == 6
    assert scored["readers_leave_one_out"]["reads"] > 0 and "type_from_6mm" in scored


def test_a_dataset_without_ratings_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"series": []}))
    with pytest.raises(ValueError, match="no 'nodules' list"):
        main(["--dataset_dir", str(tmp_path), "--out", str(tmp_path / "m.json")])
    with pytest.raises(FileNotFoundError, match="no manifest"):
        main(["--dataset_dir", str(tmp_path / "absent"), "--out", str(tmp_path / "m.json")])
