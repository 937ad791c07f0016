"""The data_prep command lines end to end on a tiny dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lungmonai.cache import CropCache
from lungmonai.tables import load_candidate_table, load_split
from tests.helpers import write_luna_dataset

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUNGMONAI_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "data_prep" / script), *args], capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=120
    )


@pytest.fixture
def dataset(tmp_path):
    return write_luna_dataset(tmp_path / "luna", include_missing_series=False)


def test_prepare_rerun_and_check(dataset, tmp_path):
    root = str(dataset.root)
    checked = run("check_dataset.py", "--dataset_dir", root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "subset0: 2 .mhd, 2 .raw" in checked.stdout and "series (.mhd): 4" in checked.stdout

    first = run("prepare_luna.py", "--dataset_dir", root, "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    prepared = dataset.root / "prepared"
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["table"]["positives"] == len(dataset.nodules)
    assert summary["cache"]["built"] == 4 and not summary["cache"]["failed"]
    assert f"positives: {len(dataset.nodules)}" in first.stdout
    table = load_candidate_table(prepared / "candidates.csv")
    split = load_split(prepared / "split.json")
    assert sorted(split.all_series) == dataset.series_uids
    cache = CropCache(prepared / "cache")
    assert cache.read_crop(table.series_uid.iloc[0], 0).shape == (32, 48, 48)

    # a rerun resumes the cache and keeps the split, even when asked for another seed
    split_text = (prepared / "split.json").read_text()
    again = run("prepare_luna.py", "--dataset_dir", root, "--workers", "1", "--seed", "5", "--split_mode", "book")
    assert again.returncode == 0 and "kept existing" in again.stdout
    assert (prepared / "split.json").read_text() == split_text
    assert json.loads((prepared / "summary.json").read_text())["cache"]["fresh"] == 4
    new = run("prepare_luna.py", "--dataset_dir", root, "--split_mode", "book", "--new_split", "--no_cache")
    assert new.returncode == 0 and load_split(prepared / "split.json").mode == "book"

    cached = run("prepcache.py", "--dataset_dir", root, "--workers", "1")
    assert cached.returncode == 0 and json.loads(cached.stdout)["fresh"] == 4

    # a truncated .raw: check_dataset names it and fails; the cache build reports that series only
    raw = dataset.series[dataset.series_uids[2]].with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-100])
    checked = run("check_dataset.py", "--dataset_dir", root)
    assert checked.returncode == 1
    assert f"{raw}: truncated" in checked.stdout
    cached = run("prepcache.py", "--dataset_dir", root, "--workers", "1")
    report = json.loads(cached.stdout)
    assert cached.returncode == 1 and list(report["failed"]) == [dataset.series_uids[2]] and report["fresh"] == 3


def test_check_finds_missing_data_file_and_missing_series(dataset):
    mhd = dataset.series[dataset.series_uids[0]]
    mhd.with_suffix(".raw").unlink()
    (dataset.root / "subset0" / "orphan.raw").write_bytes(b"")
    checked = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert checked.returncode == 1
    assert f"{mhd}: data file {mhd.stem}.raw is missing" in checked.stdout
    assert "orphan.raw: data file without a .mhd header" in checked.stdout
    mhd.unlink()
    checked = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert checked.returncode == 1 and "row(s) name 1 series not on disk" in checked.stdout
    lenient = run("check_dataset.py", "--dataset_dir", str(dataset.root), "--allow_missing_series")
    assert lenient.returncode == 0, lenient.stdout


def test_check_counts_series_in_the_dataset_folder_itself(dataset):
    # find_series reads top-level .mhd files; the check must see (and check) the same series
    mhd = dataset.series[dataset.series_uids[0]]
    for path in (mhd, mhd.with_suffix(".raw")):
        path.rename(dataset.root / path.name)
    checked = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "series (.mhd): 4" in checked.stdout and "(top level): 1 .mhd, 1 .raw" in checked.stdout
    (dataset.root / mhd.with_suffix(".raw").name).unlink()
    broken = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert broken.returncode == 1 and f"{dataset.root / mhd.name}: data file {mhd.stem}.raw is missing" in broken.stdout


def test_prepare_refuses_to_write_over_the_dataset_csvs(dataset):
    from lungmonai.tables.prepare import prepare_dataset

    original = (dataset.root / "candidates.csv").read_text()
    with pytest.raises(ValueError, match=r"cannot be the dataset directory itself .*candidates\.csv would be overwritten"):
        prepare_dataset(dataset.root, dataset.root, cache=False)
    assert (dataset.root / "candidates.csv").read_text() == original


def test_check_names_rows_without_a_series_uid(dataset):
    annotations = dataset.root / "annotations.csv"
    annotations.write_text(annotations.read_text() + ",1.0,2.0,3.0,4.0\n")  # a stray line, uid missing
    checked = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert f"{annotations}: 1 row(s) without a seriesuid (line " in checked.stdout


def test_malignancy_table_refuses_to_write_the_join_over_its_own_nodule_table(dataset):
    target = dataset.root / "annotations_with_malignancy.csv"  # the join's default place
    before = target.read_bytes()
    result = run("build_malignancy_table.py", "--out", str(target),
                 "--annotations", str(dataset.root / "annotations.csv"), "--dataset_dir", str(dataset.root))
    assert result.returncode == 2
    assert "is also where the join goes" in result.stderr and str(target) in result.stderr
    assert target.read_bytes() == before  # refused before LIDC is even read


def _one_error_line(done: subprocess.CompletedProcess, script: str, path: Path) -> str:
    """The single stderr line of a user error, checked to name ``path`` and carry no traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{script}: error: {path}"), lines[0]
    return lines[0]


def test_a_malformed_csv_is_one_line_not_a_traceback(dataset):
    csv = dataset.root / "candidates.csv"
    text = csv.read_text().splitlines()
    fields = text[1].split(",")
    fields[1] = "left"  # coordX as text
    csv.write_text("\n".join([text[0], ",".join(fields), *text[2:]]) + "\n")
    done = run("prepare_luna.py", "--dataset_dir", str(dataset.root), "--no_cache")
    assert "coordX" in _one_error_line(done, "prepare_luna.py", csv)


def test_a_leaked_split_is_one_line_not_a_traceback(dataset):
    root = str(dataset.root)
    assert run("prepare_luna.py", "--dataset_dir", root, "--no_cache").returncode == 0
    split_path = dataset.root / "prepared" / "split.json"
    split = json.loads(split_path.read_text())
    uid, part = next(iter(split["series"].items()))
    other = next(name for name in ("train", "val", "test") if name != part)
    text = split_path.read_text().replace(f'"{uid}": "{part}"', f'"{uid}": "{part}", "{uid}": "{other}"', 1)
    assert text != split_path.read_text()
    split_path.write_text(text)  # the same series in two sets
    done = run("prepare_luna.py", "--dataset_dir", root, "--no_cache")
    assert "listed twice" in _one_error_line(done, "prepare_luna.py", split_path)
    assert split_path.read_text() == text  # nothing already written is lost


def test_an_out_that_is_a_file_is_one_line(dataset):
    taken = dataset.root / "notes.txt"
    taken.write_text("mine")
    done = run("prepare_luna.py", "--dataset_dir", str(dataset.root), "--out", str(taken), "--no_cache")
    _one_error_line(done, "prepare_luna.py", taken)
    assert taken.read_text() == "mine"


def _append_row(csv: Path, row: str) -> int:
    """Append ``row`` to ``csv``; returns its line number (the header is line 1)."""
    text = csv.read_text()
    csv.write_text(text + row + "\n")
    return len(text.splitlines()) + 1


def test_prepare_drops_a_candidate_outside_its_ct_and_refuses_such_an_annotation(dataset):
    root, uid = dataset.root, dataset.series_uids[1]
    line = _append_row(root / "candidates.csv", f"{uid},5000.0,0.0,0.0,0")
    done = run("prepare_luna.py", "--dataset_dir", str(root), "--no_cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{root / 'candidates.csv'}: line {line}: series {uid}: candidate centre (5000.0, 0.0, 0.0) mm lies outside" in done.stdout
    table = load_candidate_table(root / "prepared" / "candidates.csv")
    assert not (table["center_x"] == 5000.0).any()

    line = _append_row(root / "annotations.csv", f"{uid},0.0,0.0,-5000.0,6.0")
    done = run("prepare_luna.py", "--dataset_dir", str(root), "--no_cache")
    error = _one_error_line(done, "prepare_luna.py", root / "annotations.csv")
    assert f"line {line}: series {uid}: annotation centre" in error


def _edit_csv_line(csv: Path, line: int, edit) -> None:
    """Replace CSV line ``line`` (the header is 1) by ``edit(fields)``."""
    lines = csv.read_text().splitlines()
    lines[line - 1] = ",".join(edit(lines[line - 1].split(",")))
    csv.write_text("\n".join(lines) + "\n")


def _text_in_coord_x(data):
    _edit_csv_line(data.root / "candidates.csv", 2, lambda f: [f[0], "left", *f[2:]])
    return f"{data.root / 'candidates.csv'}: column 'coordX' has 1 value(s) that are not numbers (line 2: 'left')"


def _extra_field_on_the_first_row(data):  # pandas takes the uid column as the index: everything shifts
    _edit_csv_line(data.root / "annotations.csv", 2, lambda f: [*f, "7"])
    return f"{data.root / 'annotations.csv'}: 1 line(s) with a field count other than the header's 5 (line 2 has 6)"


def _missing_field(data):
    _edit_csv_line(data.root / "candidates.csv", 3, lambda f: f[:-1])
    return f"{data.root / 'candidates.csv'}: 1 line(s) with a field count other than the header's 5 (line 3 has 4)"


def _centre_outside(data):
    uid = data.series_uids[2]
    _edit_csv_line(data.root / "annotations.csv", 4, lambda f: [uid, "0.0", "0.0", "5000.0", f[4]])
    return f"{data.root / 'annotations.csv'}: line 4: series {uid}: centre (0.0, 0.0, 5000.0) mm lies outside its CT"


def _overflowing_header(data):
    mhd = data.series[data.series_uids[1]]
    text = mhd.read_text().splitlines()
    mhd.write_text("\n".join("DimSize = 4294967296 4294967296 2" if l.startswith("DimSize") else l for l in text) + "\n")
    return f"unreadable header: {mhd}: DimSize"


def _nan_voxels(data):
    import SimpleITK as sitk

    mhd = data.series[data.series_uids[3]]
    image = sitk.ReadImage(str(mhd))
    voxels = sitk.GetArrayFromImage(image).astype("float32")
    voxels[1, 2, 3] = float("nan")
    nan_image = sitk.GetImageFromArray(voxels)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(mhd))
    return f"unreadable CT: {mhd}: 1 voxel(s) are NaN or inf"


@pytest.mark.parametrize("breakage, quick_finds_it", [
    (_text_in_coord_x, False), (_extra_field_on_the_first_row, False), (_missing_field, False),
    (_centre_outside, False), (_overflowing_header, True), (_nan_voxels, False),
])
def test_the_full_check_finds_what_preparation_would_fail_on_or_accept(dataset, breakage, quick_finds_it):
    problem = breakage(dataset)
    full = run("check_dataset.py", "--dataset_dir", str(dataset.root))
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stdout + full.stderr
    assert f"PROBLEM: {problem}" in full.stdout, full.stdout
    quick = run("check_dataset.py", "--dataset_dir", str(dataset.root), "--quick")
    assert (problem in quick.stdout) == quick_finds_it, quick.stdout  # --quick reads headers only
    assert quick.returncode == 1 or not quick_finds_it
