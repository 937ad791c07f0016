"""Atomic writers: the destination is either the old file or the whole new one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import lungmonai.cache.atomic as atomic_module
from lungmonai.cache.atomic import (
    atomic_open,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    jsonable,
    remove_stale_temps,
)


def test_writers_round_trip(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    atomic_write_json(tmp_path / "sub" / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "sub" / "a.json").read_text()) == {"x": [1, 2]}
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    atomic_save_npy(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)
    assert not (tmp_path / "a.npy.npy").exists()
    frame = pd.DataFrame({"u": ["1.2"], "v": [0.1]})
    atomic_write_csv(tmp_path / "a.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv", dtype={"u": str}), frame)
    assert not list(tmp_path.rglob("*.tmp"))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"new": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"old": True}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError):
        atomic_write_json(target, {"bad": float("nan")})
    assert json.loads(target.read_text()) == {"old": True}


def test_remove_stale_temps_spares_writes_in_progress(tmp_path):
    old = tmp_path / ".crops.npy.abc.tmp"
    old.write_bytes(b"half, from a killed writer")
    os.utime(old, (time.time() - 2 * 3600, time.time() - 2 * 3600))
    young = tmp_path / ".crops.npy.def.tmp"
    young.write_bytes(b"another process is writing this")
    (tmp_path / "crops.npy").write_bytes(b"keep")
    assert remove_stale_temps(tmp_path) == 1
    assert not old.exists() and young.exists() and (tmp_path / "crops.npy").exists()


def test_atomic_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "split.json", {"a": 1})
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "split.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644
    previous = os.umask(0o027)  # a stricter umask is honoured too, not a fixed 0o644
    try:
        atomic_write_json(tmp_path / "private.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o640


def test_jsonable_turns_every_undefined_figure_into_null(tmp_path):
    report = {"auc": np.float64("nan"), "ci": (np.float64(0.2), float("inf")), "n": np.int64(3), "ok": np.bool_(True),
              "rows": pd.DataFrame({"p": [0.5, np.nan]}), "curve": np.array([1.0, np.nan])}
    atomic_write_json(tmp_path / "m.json", jsonable(report))  # the strict writer accepts it
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "auc": None, "ci": [0.2, None], "n": 3, "ok": True, "rows": [{"p": 0.5}, {"p": None}], "curve": [1.0, None]}


def _dead_pid() -> int:
    """The id of a process that has exited (a killed writer's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_writers_temp_is_removed_at_once(tmp_path):
    host = atomic_module._host()
    dead = tmp_path / f".volume.npy.{host}-{_dead_pid()}.k3j_x9.tmp"
    dead.write_bytes(b"half a volume, from a killed run")
    alive = tmp_path / f".volume.npy.{host}-{os.getpid()}.a1b2c3.tmp"
    alive.write_bytes(b"this process is writing this")
    elsewhere = tmp_path / f".volume.npy.otherhost-{_dead_pid()}.zzzz.tmp"
    elsewhere.write_bytes(b"a writer on another machine: only age tells")
    assert remove_stale_temps(tmp_path) == 1
    assert not dead.exists() and alive.exists() and elsewhere.exists()


def test_temp_names_carry_their_writer(tmp_path):
    with atomic_open(tmp_path / "crops.npy") as handle:
        (tmp,) = tmp_path.glob(".*.tmp")
        assert tmp.name.startswith(f".crops.npy.{atomic_module._host()}-{os.getpid()}.")
        handle.write(b"x")
