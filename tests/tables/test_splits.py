"""Patient-level split: deterministic, stratified, leak-proof on load and before every stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.tables.splits import (
    Split,
    SplitLeakError,
    assert_disjoint,
    check_no_leak,
    load_split,
    make_split,
    save_split,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "luna16_reference"


def fake_table(n_series: int = 60, seed: int = 1) -> pd.DataFrame:
    """Series 0..n-1: a third with a malignant nodule, a third benign only, a third none."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_series):
        uid = f"1.2.3.{i:05d}"
        kind = i % 3
        if kind < 2:
            rows.append((uid, True, kind == 0))
        rows += [(uid, False, False)] * int(rng.integers(1, 4))
    frame = pd.DataFrame(rows, columns=["series_uid", "is_nodule", "is_malignant"])
    return frame.sample(frac=1.0, random_state=seed)


def test_one_entry_per_series_and_deterministic():
    table = fake_table()
    a = make_split(table, seed=7)
    b = make_split(table.sample(frac=1.0, random_state=99), seed=7)
    assert a.assignment == b.assignment
    assert sorted(a.assignment) == sorted(table.series_uid.unique())
    assert make_split(table, seed=8).assignment != a.assignment
    counts = {name: len(a.series_in(name)) for name in ("train", "val", "test")}
    assert counts == {"train": 42, "val": 9, "test": 9}


@pytest.mark.parametrize("n_series", [5, 9, 60])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_eval_sets_hold_nodules_and_malignant(n_series, seed):
    table = fake_table(n_series)
    split = make_split(table, seed=seed)
    malignant = set(table.series_uid[table.is_malignant])
    nodule = set(table.series_uid[table.is_nodule])
    # with fewer than three series of a kind, train keeps one rather than both eval sets getting one
    for name in ("val", "test"):
        members = set(split.series_in(name))
        assert members & malignant or len(malignant) < 3, f"{name} lacks a malignant series"
        assert members & nodule, f"{name} lacks a nodule"
    assert set(split.series_in("train")) & malignant


def test_extra_series_and_book_mode():
    table = fake_table(25)
    split = make_split(table, extra_series=["9.9.9"], seed=0)
    assert split.set_of("9.9.9") in {"train", "val", "test"}
    book = make_split(table, mode="book")
    ordered = sorted(table.series_uid.unique())
    assert book.series_in("val") == ordered[::10] and not book.series_in("test")
    with pytest.raises(ValueError, match="unknown split mode"):
        make_split(table, mode="random")
    with pytest.raises(ValueError, match="fractions"):
        make_split(table, fractions=(0.5, 0.3, 0.3))


def test_heldout_mode_puts_every_series_in_test_and_nothing_to_train_on(tmp_path):
    table = fake_table(12)
    split = make_split(table, mode="heldout", extra_series=["9.9.9"])
    assert sorted(split.series_in("test")) == sorted({*table.series_uid, "9.9.9"})
    assert not split.series_in("train") and not split.series_in("val")
    save_split(split, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json").mode == "heldout"


@pytest.mark.skipif(not (REFERENCE / "annotations_with_malignancy.csv").is_file(), reason=f"real tables not at {REFERENCE}")
def test_book_mode_on_real_reference():
    mal = pd.read_csv(REFERENCE / "annotations_with_malignancy.csv", dtype={"seriesuid": str})
    table = pd.DataFrame({"series_uid": mal.seriesuid, "is_nodule": True, "is_malignant": mal.mal_bool.astype(bool)})
    split = make_split(table, mode="book")
    val = set(split.series_in("val"))
    assert len(val) == 60 and len(split.series_in("train")) == 540
    in_val = table[table.series_uid.isin(val)]
    assert len(in_val) == 124 and int(in_val.is_malignant.sum()) == 40  # the README's measured facts


def test_save_load_round_trip(tmp_path):
    split = make_split(fake_table(), seed=3)
    path = save_split(split, tmp_path / "split.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["mode"] == "stratified" and data["seed"] == 3
    assert data["fractions"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    loaded = load_split(path)
    assert loaded == split


def test_load_refuses_a_series_in_two_sets(tmp_path):
    path = tmp_path / "split.json"
    # raw JSON text can repeat a key; json.loads would silently keep the last one
    path.write_text('{"version": 1, "mode": "book", "seed": 0, "series": {"1.2.3": "train", "1.2.4": "val", "1.2.3": "val"}}')
    with pytest.raises(SplitLeakError, match=r"split\.json.*1\.2\.3"):
        load_split(path)

    path.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["d"]}))
    assert load_split(path).series_in("train") == ["a", "b"]
    path.write_text(json.dumps({"train": ["a", "b"], "val": ["c", "b"], "test": ["d"]}))
    with pytest.raises(SplitLeakError, match="b \\(in both 'train' and 'val'\\)"):
        load_split(path)
    path.write_text(json.dumps({"train": ["a", "a"], "val": [], "test": []}))
    with pytest.raises(SplitLeakError, match="twice in 'train'"):
        load_split(path)
    path.write_text(json.dumps({"series": {"a": "holdout"}}))
    with pytest.raises(ValueError, match="unknown set 'holdout'"):
        load_split(path)
    path.write_text(json.dumps({"train": ["a", "b"], "val": "c.1", "test": []}))  # one uid, not a list
    with pytest.raises(ValueError, match=r"split\.json: \['val'\] must be lists of series uids"):
        load_split(path)


def test_assert_disjoint_and_check_no_leak():
    with pytest.raises(SplitLeakError, match="x"):
        assert_disjoint({"train": ["x", "y"], "test": ["x"]})
    split = Split({"train": ("a", "b"), "val": ("c",), "test": ("d",)})
    check_no_leak(split, ["a", "b"], ["c", "d"])
    with pytest.raises(SplitLeakError, match=r"c \(val\)"):
        check_no_leak(split, ["a", "c"], ["d"])
    with pytest.raises(SplitLeakError, match="evaluation series from the train set: b"):
        check_no_leak(split, ["a"], ["b", "c"])
    with pytest.raises(SplitLeakError, match="not in split"):
        check_no_leak(split, ["zz"], [])
