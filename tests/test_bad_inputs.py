"""One table of the bad inputs the project refuses, through the commands a user types.

Each case breaks one input of a tiny dataset, runs one entry point as a subprocess and checks:
exit status 1 (2 for an argparse usage error), exactly one line on stderr naming the offending
file and no traceback, and that what was written before (the prepared table, split and cache,
an earlier report, a checkpoint) is unchanged. ``check_dataset.py`` is a report, not a failing
command: it exits 1 with the offending file in a ``PROBLEM:`` line on stdout and nothing on stderr.

MONAI warns on stderr that a bundle config is code on every ``python -m monai.bundle run``;
that one warning is filtered (PYTHONWARNINGS) so the run's own stderr is what is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from lungmonai.malignancy.size_fusion import FUSION_FILE
from tests.conftest import tests_bundles
from tests.helpers import CodePayload, FakeDataset, write_luna_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "LUNGMONAI_PROGRESS": "0", "OMP_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore:parsing config_file:UserWarning"}
PROG = {"prepare": "prepare_luna.py", "check": "check_dataset.py", "analyze": "lungmonai", "train": "monai.bundle",
        "malignancy": "build_malignancy_table.py"}


@dataclass
class Bad:
    """What a breaker did: the file the error must name, and how to run the command on it."""

    names: list[Path]  # the error names one of these
    words: str = ""  # and says this
    args: list[str] = field(default_factory=list)  # extra arguments
    dataset_dir: Path | None = None  # instead of the dataset's own
    target: Path | None = None  # what `analyze` reads (default: the first series)
    bundles: Path | None = None  # `analyze --bundles` (default: the untrained bundles)
    out: Path | None = None  # `analyze --out` (default: a folder holding an earlier report)
    exit_code: int = 1
    rewrites: set[str] = field(default_factory=set)  # files the failing run may rewrite (same bytes or its report)
    damaged_series: str | None = None  # whose cache entry the run may drop
    marker: Path | None = None  # must not exist afterwards (a crafted checkpoint's payload)


@dataclass
class Setup:
    ds: FakeDataset
    tmp: Path
    bundles: Path
    run_root: Path  # the training bundle_root

    @property
    def root(self) -> Path:
        return self.ds.root

    @property
    def prepared(self) -> Path:
        return self.ds.root / "prepared"

    def mhd(self, k: int = 1) -> Path:
        return self.ds.series[self.ds.series_uids[k]]


# ---------------------------------------------------------------------------------------------
# breakers


def _edit_line(csv: Path, line: int, edit: Callable[[list[str]], list[str]]) -> None:
    lines = csv.read_text().splitlines()
    lines[line - 1] = ",".join(edit(lines[line - 1].split(",")))
    csv.write_text("\n".join(lines) + "\n")


def _header_with(mhd: Path, key: str, value: str) -> None:
    """Set ``key`` in the header, before ElementDataFile (which ends a MetaImage header)."""
    lines = mhd.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ElementDataFile"))
    if key == "ElementDataFile":
        lines[at] = f"{key} = {value}"
    else:
        lines = [line for line in lines[:at] if not line.startswith(f"{key} =")] + [f"{key} = {value}", *lines[at:]]
    mhd.write_text("\n".join(lines) + "\n")


def text_in_coord_x(s: Setup) -> Bad:
    _edit_line(s.root / "candidates.csv", 2, lambda f: [f[0], "left", *f[2:]])
    return Bad([s.root / "candidates.csv"], "coordX")


def missing_column(s: Setup) -> Bad:
    csv = s.root / "candidates.csv"
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    csv.write_text("\n".join(",".join(r[:1] + r[2:]) for r in rows) + "\n")  # no coordX
    return Bad([csv], "coordX")


def extra_field(s: Setup) -> Bad:
    _edit_line(s.root / "annotations.csv", 2, lambda f: [*f, "7"])
    return Bad([s.root / "annotations.csv"], "field")


def centre_outside(s: Setup) -> Bad:
    _edit_line(s.root / "annotations.csv", 2, lambda f: [f[0], f[1], f[2], "5000.0", f[4]])
    return Bad([s.root / "annotations.csv"], "outside")


def _broken_ct(s: Setup, words: str) -> Bad:
    return Bad([s.mhd()], words, target=s.mhd(), rewrites={"summary.json", "candidates.csv"},
               damaged_series=s.ds.series_uids[1])


def data_file_escapes(s: Setup) -> Bad:
    shutil.copy(s.mhd().with_suffix(".raw"), s.root / "outside.raw")
    _header_with(s.mhd(), "ElementDataFile", "../outside.raw")
    return _broken_ct(s, "outside the header's folder")


def data_file_absolute(s: Setup) -> Bad:
    shutil.copy(s.mhd().with_suffix(".raw"), s.tmp / "elsewhere.raw")
    _header_with(s.mhd(), "ElementDataFile", str(s.tmp / "elsewhere.raw"))
    return _broken_ct(s, "ElementDataFile")


def header_size_minus_one(s: Setup) -> Bad:
    _header_with(s.mhd(), "HeaderSize", "-1")
    return _broken_ct(s, "HeaderSize")


def overflowing_dim_size(s: Setup) -> Bad:
    _header_with(s.mhd(), "DimSize", "4294967296 4294967296 2")
    return _broken_ct(s, "DimSize")


def truncated_raw(s: Setup) -> Bad:
    raw = s.mhd().with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-100])
    bad = _broken_ct(s, "truncated")
    bad.names.append(raw)
    return bad


def nan_voxels(s: Setup) -> Bad:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(s.mhd()))
    voxels = sitk.GetArrayFromImage(image).astype("float32")
    voxels[1, 2, 3] = float("nan")
    nan_image = sitk.GetImageFromArray(voxels)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(s.mhd()))
    return _broken_ct(s, "NaN")


def crafted_last_pt(s: Setup) -> Bad:
    last = s.run_root / "models" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"network": CodePayload(s.tmp / "ran")}, last)
    return Bad([last], "not a plain checkpoint", args=["--resume", "true"], marker=s.tmp / "ran")


def crafted_model_pt(s: Setup) -> Bad:
    bundles = s.tmp / "bundles"
    shutil.copytree(s.bundles, bundles)
    model = bundles / "nodule_cls" / "models" / "model.pt"
    torch.save({"head.weight": CodePayload(s.tmp / "ran")}, model)
    return Bad([model], "not a plain checkpoint", bundles=bundles, marker=s.tmp / "ran")


def missing_dataset(s: Setup) -> Bad:
    nowhere = s.tmp / "nowhere"
    return Bad([nowhere], dataset_dir=nowhere, target=nowhere)


def out_is_a_directory(s: Setup) -> Bad:
    folder = s.tmp / "table.csv"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    return Bad([folder], "directory", args=["--out", str(folder)], exit_code=2)


def out_is_a_file(s: Setup) -> Bad:
    taken = s.tmp / "notes.txt"
    taken.write_text("mine")
    return Bad([taken], "not a directory", args=["--out", str(taken)], out=taken)


def scrambled_cache(s: Setup) -> Bad:
    """One byte of every crop of the training series changed, at the same size."""
    split = json.loads((s.prepared / "split.json").read_text())["series"]
    files = [s.prepared / "cache" / "series" / uid / "crops.npy" for uid, part in split.items() if part == "train"]
    for crops in files:
        data = bytearray(crops.read_bytes())
        n = np.load(crops, mmap_mode="r").shape[0]
        step = (len(data) - 128) // n
        for k in range(n):
            data[128 + k * step + 1001] ^= 0x5A
        crops.write_bytes(bytes(data))
    return Bad(files, "differs from the checksum")


def split_lists_a_series_twice(s: Setup) -> Bad:
    path = s.prepared / "split.json"
    split = json.loads(path.read_text())
    uid, part = next(iter(split["series"].items()))
    other = next(name for name in ("train", "val", "test") if name != part)
    path.write_text(path.read_text().replace(f'"{uid}": "{part}"', f'"{uid}": "{part}", "{uid}": "{other}"', 1))
    return Bad([path], "listed twice")


def training_on_the_validation_part(s: Setup) -> Bad:
    return Bad([s.prepared / "split.json"], "used for both training and evaluation", args=["--train_parts", '["train", "val"]'])


# ---------------------------------------------------------------------------------------------
# the table: (entry point, breaker)

CASES = [
    *[(entry, breaker) for breaker in (text_in_coord_x, missing_column, extra_field, centre_outside)
      for entry in ("prepare", "check")],
    *[(entry, breaker) for breaker in (data_file_escapes, data_file_absolute, header_size_minus_one,
                                       overflowing_dim_size, truncated_raw, nan_voxels)
      for entry in ("prepare", "check", "analyze")],
    ("train", crafted_last_pt),
    ("analyze", crafted_model_pt),
    *[(entry, missing_dataset) for entry in ("prepare", "check", "analyze", "train")],
    ("malignancy", out_is_a_directory),
    ("prepare", out_is_a_file),
    ("analyze", out_is_a_file),
    ("train", scrambled_cache),
    ("prepare", split_lists_a_series_twice),
    ("train", split_lists_a_series_twice),
    ("train", training_on_the_validation_part),
]


@pytest.fixture(scope="module")
def untrained_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three trained bundles' configs with random weights: enough for `analyze` to run."""
    from monai.bundle import ConfigParser

    bundles = tmp_path_factory.mktemp("bundles")
    shutil.copy(tests_bundles() / "contract.json", bundles / "contract.json")
    for seed, name in enumerate(("nodule_seg", "nodule_cls", "nodule_malignancy")):
        root = bundles / name
        shutil.copytree(REPO / "bundles" / name / "configs", root / "configs",
                    ignore=shutil.ignore_patterns(FUSION_FILE.name))  # fitted to the shipped weights
        parser = ConfigParser()
        parser.read_config(str(root / "configs/inference.json"))
        parser["bundles_dir"] = str(bundles)
        torch.manual_seed(seed)
        (root / "models").mkdir()
        torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models/model.pt")
    return bundles


def _command(entry: str, s: Setup, bad: Bad, out: Path) -> list[str]:
    dataset = str(bad.dataset_dir or s.root)
    if entry in ("prepare", "check"):
        extra = ["--workers", "1"] if entry == "prepare" else []
        return [sys.executable, str(REPO / "data_prep" / PROG[entry]), "--dataset_dir", dataset, *extra, *bad.args]
    if entry == "malignancy":
        return [sys.executable, str(REPO / "data_prep" / PROG[entry]), *bad.args]
    if entry == "analyze":
        return [sys.executable, "-m", "lungmonai.cli", "analyze", str(bad.target or s.mhd(0)), "--out", str(bad.out or out),
                "--bundles", str(bad.bundles or s.bundles), "--device", "cpu", *bad.args]
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
            str(REPO / "bundles/nodule_cls/configs/train.json"), "--dataset_dir", dataset, "--bundle_root", str(s.run_root),
            "--epochs", "1", "--epoch_samples", "8", "--batch_size", "4", "--val_batch_size", "4", "--device", "cpu",
            *bad.args]


def _snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    files = [f for p in paths if p.exists() for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


@pytest.mark.parametrize("entry, breaker", [pytest.param(e, b, id=f"{e}-{b.__name__}") for e, b in CASES])
def test_a_bad_input_is_one_line_naming_the_file(entry: str, breaker: Callable[[Setup], Bad], untrained_bundles: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGMONAI_PROGRESS", "0")
    ds = write_luna_dataset(tmp_path / "luna", include_missing_series=False)
    if entry in ("prepare", "train"):
        from lungmonai.tables.prepare import prepare_dataset

        prepare_dataset(ds.root, workers=1)
    s = Setup(ds, tmp_path, untrained_bundles, tmp_path / "cls_run")
    out = tmp_path / "reports"
    earlier_report = out / f"{ds.series_uids[0]}_report.json"
    earlier_report.parent.mkdir()
    earlier_report.write_text('{"earlier": true}\n')
    bad = breaker(s)
    kept = [p for p in (s.prepared, s.run_root, out, s.bundles, *bad.names) if p.exists()]
    before = _snapshot(kept)

    done = subprocess.run(_command(entry, s, bad, out), cwd=REPO, env=ENV, capture_output=True, encoding="utf-8",
                          errors="replace", timeout=300)

    report = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == bad.exit_code, report
    assert "Traceback" not in done.stderr, report
    if entry == "check":  # a report: the problem on stdout, nothing on stderr
        assert done.stderr == "", report
        problems = [line for line in done.stdout.splitlines() if "PROBLEM:" in line or "error:" in line]
        assert any(str(p) in line for p in bad.names for line in problems), report
    else:
        lines = done.stderr.splitlines()
        if bad.exit_code == 2:  # argparse prints its usage first
            assert lines and lines[0].startswith("usage: "), report
            lines = lines[next(k for k, line in enumerate(lines) if line.startswith(f"{PROG[entry]}: error: ")):]
        assert len(lines) == 1 and lines[0].startswith(f"{PROG[entry]}: error: "), report
        assert any(str(p) in lines[0] for p in bad.names), report
        assert bad.words.lower() in lines[0].lower(), report
    if bad.marker is not None:
        assert not bad.marker.exists(), "the crafted checkpoint ran its code"

    after = _snapshot(kept)
    damaged = s.prepared / "cache" / "series" / bad.damaged_series if bad.damaged_series else None
    for path, (data, mtime) in before.items():
        if damaged is not None and damaged in path.parents:
            continue  # its CT changed: the entry is stale, and its rebuild failed
        assert path in after, f"{path} was removed"
        if path.name == "summary.json" and path.name in bad.rewrites:
            continue  # the run's own report
        assert after[path][0] == data, f"{path} was changed"
        if path.name not in bad.rewrites:
            assert after[path][1] == mtime, f"{path} was rewritten"
