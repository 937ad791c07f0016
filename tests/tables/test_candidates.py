"""Candidate table: positives from annotations, negatives from class-0 candidates, on disk only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.io import find_series
from lungmonai.tables.candidates import (
    COLUMNS,
    CandidateTableError,
    build_candidate_table,
    load_candidate_table,
    save_candidate_table,
)
from tests.helpers import write_luna_dataset

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "luna16_reference"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_luna_dataset(tmp_path_factory.mktemp("luna"))


def test_table_contents_follow_the_book(tiny):
    table, summary = build_candidate_table(tiny.root, find_series(tiny.root))
    assert tuple(table.columns) == COLUMNS
    positives = table[table.is_nodule]
    negatives = table[~table.is_nodule]
    assert len(positives) == len(tiny.nodules) and positives.has_annotation.all()
    assert len(negatives) == len(tiny.negatives) and not negatives.has_annotation.any()
    assert (negatives.diameter_mm == 0).all() and not negatives.is_malignant.any()
    # diameters and malignancy come from the annotation / malignancy CSVs
    for n in tiny.nodules:
        row = positives[(positives.series_uid == n.series_uid) & np.isclose(positives.center_x, n.center_xyz[0])]
        assert len(row) == 1
        assert row.diameter_mm.iloc[0] == pytest.approx(n.diameter_mm)
        assert bool(row.is_malignant.iloc[0]) == n.malignant
    assert tiny.missing_series not in set(table.series_uid)
    assert summary["series_dropped_not_on_disk"] == 1 and summary["rows_dropped_not_on_disk"] == 2
    assert summary["class1_candidates_ignored"] == len(tiny.nodules) + 1
    assert summary["positives"] == len(tiny.nodules)
    assert summary["malignant"] == sum(n.malignant for n in tiny.nodules)
    assert summary["annotations_without_malignancy_match"] == 0


def test_order_is_series_then_positives_by_diameter_then_negatives(tiny):
    table, _ = build_candidate_table(tiny.root, find_series(tiny.root))
    assert list(table.series_uid) == sorted(table.series_uid)
    for _, rows in table.groupby("series_uid"):
        flags = rows.is_nodule.to_numpy()
        assert not np.any(np.diff(flags.astype(int)) > 0), "negatives before positives"
        diam = rows.diameter_mm[rows.is_nodule].to_numpy()
        assert np.all(np.diff(diam) <= 0)
        assert list(rows.series_row) == list(range(len(rows)))
    # the CSV's row order does not matter
    shuffled = tiny.root / "candidates.csv"
    backup = pd.read_csv(shuffled)
    try:
        backup.sample(frac=1.0, random_state=3).to_csv(shuffled, index=False)
        again, _ = build_candidate_table(tiny.root, find_series(tiny.root))
        pd.testing.assert_frame_equal(table, again)
    finally:
        backup.to_csv(shuffled, index=False)


def test_candidates_v2_and_clear_errors(tmp_path):
    data = write_luna_dataset(tmp_path, n_series=2, candidates_name="candidates_V2.csv", with_malignancy=False)
    table, summary = build_candidate_table(tmp_path, find_series(tmp_path))
    assert summary["candidates_file"].endswith("candidates_V2.csv")
    assert not table.is_malignant.any() and summary["malignancy_file"] is None

    (tmp_path / "candidates_V2.csv").rename(tmp_path / "elsewhere.csv")
    with pytest.raises(CandidateTableError, match="candidates.csv"):
        build_candidate_table(tmp_path, data.series)

    pd.read_csv(tmp_path / "elsewhere.csv").drop(columns=["class"]).to_csv(tmp_path / "candidates.csv", index=False)
    with pytest.raises(CandidateTableError, match=r"candidates\.csv.*missing column.*'class'"):
        build_candidate_table(tmp_path, data.series)


def test_a_typo_or_a_blank_uid_is_named_with_its_file_column_and_line(tmp_path):
    data = write_luna_dataset(tmp_path, n_series=2)
    annotations = (tmp_path / "annotations.csv").read_text().splitlines()
    fields = annotations[1].split(",")
    (tmp_path / "annotations.csv").write_text("\n".join([annotations[0], ",".join([*fields[:4], "4.5.1"]), *annotations[2:]]) + "\n")
    with pytest.raises(CandidateTableError, match=r"annotations\.csv: column 'diameter_mm' has 1 value\(s\) that are not numbers \(line 2: '4\.5\.1'\)"):
        build_candidate_table(tmp_path, data.series)
    (tmp_path / "annotations.csv").write_text("\n".join([annotations[0], ",".join(["", *fields[1:]]), *annotations[2:]]) + "\n")
    with pytest.raises(CandidateTableError, match=r"annotations\.csv: column 'seriesuid' has 1 empty"):
        build_candidate_table(tmp_path, list(data.series)[:1])  # a partial download: before, a TypeError


def test_rows_with_an_extra_field_are_refused_not_shifted(tmp_path):
    # pandas would take the uid column as the index and read every value one column left.
    data = write_luna_dataset(tmp_path, n_series=2)
    lines = (tmp_path / "annotations.csv").read_text().splitlines()
    (tmp_path / "annotations.csv").write_text("\n".join([lines[0], *(line + ",1" for line in lines[1:])]) + "\n")
    with pytest.raises(CandidateTableError, match=r"annotations\.csv: data rows have 6 fields, the header 5"):
        build_candidate_table(tmp_path, data.series)


def test_save_load_round_trip_and_validation(tiny, tmp_path):
    table, _ = build_candidate_table(tiny.root, find_series(tiny.root))
    path = save_candidate_table(table, tmp_path / "candidates.csv")
    loaded = load_candidate_table(path)
    pd.testing.assert_frame_equal(table, loaded)  # floats exactly, bools as bools
    assert not list(tmp_path.glob(".*.tmp"))

    table.drop(columns=["series_row"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CandidateTableError, match=r"bad\.csv.*missing \['series_row'\]"):
        load_candidate_table(tmp_path / "bad.csv")
    with pytest.raises(CandidateTableError, match="not found"):
        load_candidate_table(tmp_path / "absent.csv")


@pytest.mark.skipif(not (REFERENCE / "annotations.csv").is_file(), reason=f"real LUNA16 tables not at {REFERENCE}")
def test_real_luna16_annotations(tmp_path):
    annotations = pd.read_csv(REFERENCE / "annotations.csv")
    shutil.copy(REFERENCE / "annotations.csv", tmp_path / "annotations.csv")
    uids = sorted(annotations.seriesuid.unique())
    # negatives: a tiny fake candidates file, two class-0 rows and one class-1 row
    pd.DataFrame(
        {"seriesuid": [uids[0], uids[1], uids[2]], "coordX": [1.0, 2.0, 3.0], "coordY": [0.0] * 3,
         "coordZ": [0.0] * 3, "class": [0, 0, 1]}
    ).to_csv(tmp_path / "candidates.csv", index=False)
    table, summary = build_candidate_table(tmp_path, uids)
    assert summary["positives"] == 1186 and summary["series_in_table"] == 601
    assert summary["negatives"] == 2 and summary["series_dropped_not_on_disk"] == 0

    shutil.copy(REFERENCE / "annotations_with_malignancy.csv", tmp_path)
    table, summary = build_candidate_table(tmp_path, uids)
    malignancy = pd.read_csv(REFERENCE / "annotations_with_malignancy.csv")
    # every malignancy row finds its annotation; only annotations absent from that file stay unmatched
    assert summary["malignant"] == int(malignancy.mal_bool.sum())
    assert summary["annotations_without_malignancy_match"] == 1186 - len(malignancy)


def _extents(data):
    from lungmonai.tables.prepare import series_extents

    return series_extents(find_series(data.root))


def test_a_candidate_outside_its_ct_is_dropped_and_named_with_file_line_and_series(tmp_path):
    data = write_luna_dataset(tmp_path / "luna")
    path = data.root / "candidates.csv"
    frame = pd.read_csv(path, dtype={"seriesuid": str})
    uid = data.series_uids[1]
    frame.loc[len(frame)] = [uid, 5000.0, 0.0, 0.0, 0]  # 5 m from the CT
    frame.to_csv(path, index=False)
    before, _ = build_candidate_table(data.root, find_series(data.root))
    table, summary = build_candidate_table(data.root, find_series(data.root), extents=_extents(data))
    assert len(table) == len(before) - 1 and not (table["center_x"] == 5000.0).any()
    assert summary["rows_dropped_outside_ct"] == 1
    (line,) = summary["rows_dropped_outside_ct_lines"]
    assert line.startswith(f"{path}: line {len(frame) + 1}: series {uid}: candidate centre (5000.0, 0.0, 0.0) mm lies outside")


def test_an_annotation_outside_its_ct_is_an_error_naming_file_line_and_series(tmp_path):
    data = write_luna_dataset(tmp_path / "luna")
    path = data.root / "annotations.csv"
    frame = pd.read_csv(path, dtype={"seriesuid": str})
    uid = data.series_uids[0]
    frame.loc[1, ["coordX", "coordY", "coordZ"]] = [0.0, 0.0, 900.0]
    frame.to_csv(path, index=False)
    with pytest.raises(CandidateTableError, match=rf"^{path}: line 3: series {uid}: annotation centre \(0.0, 0.0, 900.0\) mm lies outside its CT"):
        build_candidate_table(data.root, find_series(data.root), extents=_extents(data))


def test_mined_negatives_join_the_table_as_class_0_and_nothing_else(tiny, tmp_path):
    table, _ = build_candidate_table(tiny.root, find_series(tiny.root))
    uid = table["series_uid"].iloc[0]
    first = table[table["series_uid"] == uid].iloc[0]
    mined = tmp_path / "candidates_mined.csv"
    pd.DataFrame({"seriesuid": [uid, uid], "coordX": [first.center_x + 1.0, first.center_x - 1.0],
                  "coordY": [first.center_y] * 2, "coordZ": [first.center_z] * 2, "class": [0, 0]}).to_csv(mined, index=False)
    with_mined, summary = build_candidate_table(tiny.root, find_series(tiny.root), mined_file=mined)
    assert summary["mined_negatives_read"] == 2
    assert len(with_mined) == len(table) + 2
    assert with_mined["is_nodule"].sum() == table["is_nodule"].sum()
    assert (with_mined[with_mined["series_uid"] == uid]["series_row"].to_numpy() == np.arange((with_mined["series_uid"] == uid).sum())).all()

    pd.read_csv(mined).assign(**{"class": 1}).to_csv(mined, index=False)
    with pytest.raises(CandidateTableError, match="candidates_mined.csv: mined candidates must all be class 0"):
        build_candidate_table(tiny.root, find_series(tiny.root), mined_file=mined)
