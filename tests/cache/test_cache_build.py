"""Cache build and reads: correct crops, atomic commit, resume, staleness, pool == serial."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil

import numpy as np
import pytest

import lungmonai.cache.build as build_module
from lungmonai.cache import CacheBuildError, CacheMissError, CropCache, build_cache, clip_hu, extract_crop
from lungmonai.geometry import xyz_to_irc
from lungmonai.io import find_series, read_ct
from lungmonai.tables.candidates import build_candidate_table, centers_xyz
from tests.helpers import NODULE_HU, write_luna_dataset, write_reoriented


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = write_luna_dataset(tmp_path_factory.mktemp("luna"), noise_hu=1200)  # noise exercises the clip
    table, _ = build_candidate_table(data.root, find_series(data.root))
    return data, table


@pytest.fixture(scope="module")
def serial_cache(tiny, tmp_path_factory):
    data, table = tiny
    cache_dir = tmp_path_factory.mktemp("cache_serial")
    report = build_cache(table, data.series, cache_dir, workers=1)
    assert sorted(report.built) == data.series_uids and not report.failed
    return cache_dir


def test_crops_and_volumes_match_uncached_reads(tiny, serial_cache):
    data, table = tiny
    cache = CropCache(serial_cache)
    for uid, rows in table.groupby("series_uid"):
        ct = read_ct(data.series[uid])
        clipped = clip_hu(ct.hu)
        volume, geometry = cache.read_volume(uid)
        assert isinstance(volume, np.memmap) and volume.dtype == np.int16
        np.testing.assert_array_equal(volume, clipped)
        assert clipped.min() >= -1000 and clipped.max() <= 1000
        assert geometry == ct.geometry
        for row, center in zip(rows.series_row, centers_xyz(rows)):
            crop = cache.read_crop(uid, row)
            assert crop.shape == (32, 48, 48) and crop.dtype == np.int16 and not isinstance(crop, np.memmap)
            np.testing.assert_array_equal(crop, extract_crop(clipped, xyz_to_irc(center, ct.geometry), (32, 48, 48)))
        for row in rows.series_row[rows.is_nodule]:
            assert cache.read_crop(uid, row)[16, 24, 24] == NODULE_HU  # nodule at the crop centre
    with pytest.raises(IndexError, match="asked for row 99"):
        cache.read_crop(table.series_uid.iloc[0], 99)
    with pytest.raises(CacheMissError, match="no complete cache entry"):
        cache.read_crop("9.9.9", 0)
    with pytest.raises(CacheMissError, match="built with"):
        CropCache(serial_cache, crop_shape=(16, 32, 32)).read_crop(table.series_uid.iloc[0], 0)


def test_a_flipped_sagittal_copy_caches_as_its_luna16_original(tiny, serial_cache, tmp_path):
    """Training must see crops laid out as inference analyses them (to_lps), whatever the file."""
    data, table = tiny
    uid = data.series_uids[0]
    nifti = write_reoriented(data.series[uid], tmp_path / f"{uid}.nii.gz", (2, 0, 1), (True, False, True))
    cache_dir = tmp_path / "cache"
    build_cache(table[table.series_uid == uid], {uid: nifti}, cache_dir, workers=1)
    original, flipped = CropCache(serial_cache), CropCache(cache_dir)
    volume, geometry = flipped.read_volume(uid)
    expected_volume, expected_geometry = original.read_volume(uid)
    np.testing.assert_array_equal(volume, expected_volume)
    assert geometry == expected_geometry
    for row in table.series_row[table.series_uid == uid]:
        np.testing.assert_array_equal(flipped.read_crop(uid, row), original.read_crop(uid, row))


def test_process_pool_build_equals_serial_build(tiny, serial_cache, tmp_path):
    data, table = tiny
    report = build_cache(table, data.series, tmp_path, workers=2)
    assert sorted(report.built) == data.series_uids
    for uid in data.series_uids:
        for name in ("crops.npy", "volume.npy"):
            assert (tmp_path / "series" / uid / name).read_bytes() == (serial_cache / "series" / uid / name).read_bytes()


def test_crash_before_sidecar_leaves_no_valid_entry_and_rerun_resumes(tiny, tmp_path, monkeypatch):
    data, table = tiny
    victim = data.series_uids[1]
    real_writer = build_module._write_entry_sidecar

    def crash_for_victim(directory, entry):
        if entry["series_uid"] == victim:
            raise RuntimeError("killed between data files and sidecar")
        real_writer(directory, entry)

    monkeypatch.setattr(build_module, "_write_entry_sidecar", crash_for_victim)
    with pytest.raises(CacheBuildError, match=victim) as info:
        build_cache(table, data.series, tmp_path, workers=1)
    assert victim in info.value.report.failed and len(info.value.report.built) == len(data.series) - 1
    assert (tmp_path / "series" / victim / "crops.npy").exists()  # data written, never committed
    cache = CropCache(tmp_path)
    rows = table[table.series_uid == victim]
    assert not cache.has_entry(victim) and not cache.is_fresh(victim, data.series[victim], centers_xyz(rows))
    with pytest.raises(CacheMissError):
        cache.read_crop(victim, 0)

    monkeypatch.setattr(build_module, "_write_entry_sidecar", real_writer)
    report = build_cache(table, data.series, tmp_path, workers=1)
    assert report.built == [victim] and len(report.fresh) == len(data.series) - 1
    assert cache.has_entry(victim)

    # a crash while *re*building an existing entry also leaves it missing, not old-and-valid
    monkeypatch.setattr(build_module, "_write_entry_sidecar", crash_for_victim)
    os.utime(data.series[victim].with_suffix(".raw"))
    with pytest.raises(CacheBuildError):
        build_cache(table, data.series, tmp_path, workers=1)
    assert not CropCache(tmp_path).has_entry(victim)


def test_stale_entries_are_rebuilt(tiny, tmp_path):
    data, table = tiny
    build_cache(table, data.series, tmp_path, workers=1)
    uid = data.series_uids[0]
    raw = data.series[uid].with_suffix(".raw")
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched data file, same header
    report = build_cache(table, data.series, tmp_path, workers=1)
    assert report.built == [uid]

    moved = table.copy()
    moved.loc[moved.series_uid == data.series_uids[2], "center_x"] += 1.5  # table changed for one series
    assert build_cache(moved, data.series, tmp_path, workers=1).built == [data.series_uids[2]]
    assert build_cache(moved, data.series, tmp_path, workers=1).built == []

    report = build_cache(moved, data.series, tmp_path, workers=1, crop_shape=(16, 32, 32))  # params changed
    assert sorted(report.built) == data.series_uids
    assert CropCache(tmp_path, crop_shape=(16, 32, 32)).read_crop(uid, 0).shape == (16, 32, 32)


def test_an_entry_from_before_the_body_cut_reads_as_its_whole_grid_until_rebuilt(tiny, tmp_path):
    data, table = tiny
    build_cache(table, data.series, tmp_path, workers=1)
    sidecar = next(tmp_path.rglob("entry.json"))
    uid = sidecar.parent.name
    cache = CropCache(tmp_path)
    volume, geometry = cache.read_volume(uid)
    entry = json.loads(sidecar.read_text())
    entry["key"]["format"] = entry["format"] = 4  # format 4 stored the whole working grid, uncut
    for name in ("grid_origin_xyz", "grid_shape", "body_box_irc"):
        del entry[name]
    sidecar.write_text(json.dumps(entry))
    grid, shape, start = CropCache(tmp_path).working_grid(uid)
    assert shape == volume.shape and start == (0, 0, 0)
    np.testing.assert_array_equal(grid.origin_xyz, geometry.origin_xyz)
    assert build_cache(table, data.series, tmp_path, workers=1).built == [uid]  # stale by its format
    assert "grid_origin_xyz" in json.loads(sidecar.read_text())


def test_a_rebuild_removes_the_temp_a_killed_build_left(tiny, tmp_path):
    from lungmonai.cache.atomic import _host
    from lungmonai.cache.crops import series_dir
    from tests.cache.test_atomic_writes import _dead_pid

    data, table = tiny
    uid = data.series_uids[0]
    directory = series_dir(tmp_path, uid)
    directory.mkdir(parents=True)
    leftover = directory / f".volume.npy.{_host()}-{_dead_pid()}.q8w_1z.tmp"  # a minute old, writer killed
    leftover.write_bytes(b"\0" * 4096)
    assert uid in build_cache(table, data.series, tmp_path, workers=1).built
    assert not leftover.exists() and not list(directory.glob(".*.tmp"))


def test_one_broken_series_names_its_file_and_keeps_the_others(tiny, tmp_path):
    data, table = tiny
    broken_root = tmp_path / "data"
    shutil.copytree(data.root / "subset0", broken_root / "subset0")
    series = find_series(broken_root)
    victim = sorted(series)[0]
    raw = series[victim].with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:1000])
    table = table[table.series_uid.isin(series)]
    report = build_cache(table, series, tmp_path / "cache", workers=1, raise_on_error=False)
    assert list(report.failed) == [victim] and str(series[victim].parent) in report.failed[victim]
    assert report.built == sorted(set(series) - {victim})
    del series[sorted(series)[1]]
    report = build_cache(table, series, tmp_path / "cache", workers=1, raise_on_error=False)
    assert "no CT file" in " ".join(report.failed.values())


def _read_in_child(cache, uid, queue):
    queue.put(cache.read_crop(uid, 0).sum())


def test_reads_work_in_forked_workers(tiny, serial_cache):
    data, _ = tiny
    cache = CropCache(serial_cache)
    uid = data.series_uids[0]
    expected = cache.read_crop(uid, 0).sum()  # parent has the memmap open
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(cache, uid, queue))
    child.start()
    assert queue.get(timeout=20) == expected
    child.join(timeout=20)
    assert child.exitcode == 0


def test_dask_scheduler_build(tiny, serial_cache, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    data, table = tiny
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        report = build_cache(table, data.series, tmp_path, scheduler=cluster.scheduler_address)
    assert sorted(report.built) == data.series_uids
    uid = data.series_uids[0]
    assert (tmp_path / "series" / uid / "crops.npy").read_bytes() == (serial_cache / "series" / uid / "crops.npy").read_bytes()
