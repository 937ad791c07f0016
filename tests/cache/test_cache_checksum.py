"""Cache entries carry CRC-32s: a file changed at the same size is rebuilt by the freshness check
and refused, naming the file, when training opens it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lungmonai.cache.crops as crops_module
from lungmonai.cache import CacheCorruptError, CropCache, build_cache
from lungmonai.cache.crops import CROPS_FILE, ENTRY_FILE, VOLUME_FILE, crc32, file_crc32
from lungmonai.io import find_series
from lungmonai.tables.candidates import build_candidate_table
from lungmonai.usererrors import user_error_line
from tests.helpers import write_luna_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path):
    data = write_luna_dataset(tmp_path / "luna", noise_hu=300, include_missing_series=False)
    table, _ = build_candidate_table(data.root, find_series(data.root))
    cache_dir = tmp_path / "cache"
    build_cache(table, data.series, cache_dir, workers=1)
    return data, table, cache_dir


def _flip_byte(path: Path, offset: int) -> None:
    """One byte changed, the size kept: what a size check cannot see."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def _crop_offset(path: Path, row: int) -> int:
    """A byte inside crop ``row`` of a crops file (past numpy's header)."""
    crops = np.load(path, mmap_mode="r")
    return int(crops.offset) + row * crops[0].nbytes + 1001


def _files(cache_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((cache_dir / "series").rglob("*")) if p.is_file()}


def test_the_sidecar_records_each_file_and_each_crop(built):
    data, _, cache_dir = built
    directory = cache_dir / "series" / data.series_uids[0]
    entry = json.loads((directory / ENTRY_FILE).read_text())
    assert entry["key"]["format"] == 5
    for name in (CROPS_FILE, VOLUME_FILE):
        assert entry["crc32"][name] == file_crc32(directory / name)
    crops = np.load(directory / CROPS_FILE)
    assert entry["crop_crc32"] == [crc32(np.ascontiguousarray(c)) for c in crops]


def test_a_scrambled_crop_is_rebuilt_and_reported_and_the_others_are_not(built):
    data, table, cache_dir = built
    victim = data.series_uids[1]
    crops = cache_dir / "series" / victim / CROPS_FILE
    _flip_byte(crops, _crop_offset(crops, 1))
    before = _files(cache_dir)

    report = build_cache(table, data.series, cache_dir, workers=1)

    assert report.built == [victim] and sorted(report.fresh) == sorted(set(data.series_uids) - {victim})
    assert list(report.damaged) == [victim] and report.damaged[victim].startswith(f"{crops}: ")
    assert report.to_json()["damaged_rebuilt"] == {victim: report.damaged[victim]}
    after = _files(cache_dir)
    for path, mtime in before.items():
        if victim not in path.parts:
            assert after[path] == mtime, f"{path} was rebuilt"
    assert CropCache(cache_dir).read_crop(victim, 1).shape == (32, 48, 48)  # intact again
    assert build_cache(table, data.series, cache_dir, workers=1).built == []


def test_reading_a_scrambled_crop_names_the_file(built):
    data, _, cache_dir = built
    uid = data.series_uids[0]
    crops = cache_dir / "series" / uid / CROPS_FILE
    _flip_byte(crops, _crop_offset(crops, 2))
    cache = CropCache(cache_dir)
    cache.read_crop(uid, 1)  # the other crops still read
    with pytest.raises(CacheCorruptError) as caught:
        cache.read_crop(uid, 2)
    message = str(caught.value)
    assert message.startswith(f"{crops}: crop 2 differs from the checksum") and "prepcache.py" in message
    assert isinstance(caught.value, ValueError) and user_error_line(caught.value) == message
    CropCache(cache_dir, verify=False).read_crop(uid, 2)  # what the check costs is measured against this


def test_a_scrambled_volume_is_refused_when_first_opened(built, monkeypatch):
    data, _, cache_dir = built
    uid = data.series_uids[2]
    volume = cache_dir / "series" / uid / VOLUME_FILE
    checked = []
    real = crops_module.file_crc32
    monkeypatch.setattr(crops_module, "file_crc32", lambda path, *a: checked.append(path) or real(path, *a))
    cache = CropCache(cache_dir, max_open=1)
    cache.read_volume(uid)
    cache.read_volume(data.series_uids[3])  # evicts the first
    cache.read_volume(uid)  # reopened: already checked in this process
    assert checked.count(volume) == 1

    _flip_byte(volume, volume.stat().st_size - 7)
    with pytest.raises(CacheCorruptError, match=f"^{volume}: its content differs"):
        CropCache(cache_dir).read_volume(uid)


def test_a_scrambled_header_names_the_file(built):
    data, _, cache_dir = built
    uid = data.series_uids[0]
    crops = cache_dir / "series" / uid / CROPS_FILE
    _flip_byte(crops, 2)  # numpy's magic string
    with pytest.raises(CacheCorruptError, match=f"^{crops}: not a readable array"):
        CropCache(cache_dir).read_crop(uid, 0)


def test_an_entry_without_checksums_is_stale_and_still_reads_until_rebuilt(built):
    data, table, cache_dir = built
    uid = data.series_uids[0]
    sidecar = cache_dir / "series" / uid / ENTRY_FILE
    entry = json.loads(sidecar.read_text())
    for name in ("crc32", "crop_crc32"):
        del entry[name]
    entry["key"]["format"] = entry["format"] = 3  # as the previous version wrote it
    sidecar.write_text(json.dumps(entry))
    crops = cache_dir / "series" / uid / CROPS_FILE
    _flip_byte(crops, _crop_offset(crops, 0))
    CropCache(cache_dir).read_crop(uid, 0)  # nothing to check it against: read as before
    report = build_cache(table, data.series, cache_dir, workers=1)
    assert report.built == [uid] and not report.damaged  # stale by its format, not reported as damaged
    assert "crop_crc32" in json.loads(sidecar.read_text())


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUNGMONAI_PROGRESS": "0"}
    return subprocess.run([sys.executable, str(REPO / "data_prep" / script), *args], capture_output=True,
                          encoding="utf-8", errors="replace", env=env, timeout=120)


def test_prepcache_and_prepare_rebuild_a_scrambled_entry_and_say_so(tmp_path, monkeypatch):
    from lungmonai.tables.prepare import prepare_dataset

    monkeypatch.setenv("LUNGMONAI_PROGRESS", "0")
    data = write_luna_dataset(tmp_path / "luna", include_missing_series=False)
    prepare_dataset(data.root, workers=1)
    victim = data.series_uids[3]
    crops = data.root / "prepared" / "cache" / "series" / victim / CROPS_FILE
    _flip_byte(crops, _crop_offset(crops, 0))

    done = _run("prepcache.py", "--dataset_dir", str(data.root), "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["built"] == 1 and report["fresh"] == 3 and list(report["damaged_rebuilt"]) == [victim]
    assert report["damaged_rebuilt"][victim].startswith(f"{crops}: its content differs from the checksum")
    assert done.stderr == f"prepcache.py: warning: {report['damaged_rebuilt'][victim]}; rebuilt\n"

    _flip_byte(crops, _crop_offset(crops, 0))
    done = _run("prepare_luna.py", "--dataset_dir", str(data.root), "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 built, 3 already fresh" in done.stdout
    assert f"DAMAGED, rebuilt {victim}: {crops}: its content differs" in done.stdout
    CropCache(data.root / "prepared" / "cache").read_crop(victim, 0)
