"""Build the crop/volume cache: read each CT once, write its crops and clipped volume.

Parallel over series (a series is the unit of I/O: one CT read feeds all its crops), with a
local process pool by default or a Dask distributed cluster when a scheduler address is
given. Each entry is committed by its sidecar, written last, so a killed build leaves no
entry that looks valid and a rerun only does the series that are missing or stale. A series
that fails is reported with its file; the others' finished entries are kept. An entry whose key
is current is also read through against the CRC-32s its sidecar recorded: one whose bytes changed
since (a damaged disk, a stray write at the same size) is rebuilt and reported as damaged.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_save_npy_crc32, atomic_write_json, remove_stale_temps
from lungmonai.cache.crops import (
    CACHE_FORMAT,
    CROPS_FILE,
    ENTRY_FILE,
    VOLUME_FILE,
    CacheParams,
    CropCache,
    clip_hu,
    crc32,
    damaged_file,
    entry_key,
    extract_crop,
    read_entry,
    series_dir,
)
from lungmonai.geometry import irc_to_xyz, xyz_to_irc
from lungmonai.io.volume import Geometry
from lungmonai.parallel import process_context
from lungmonai.progress import progress


class CacheBuildError(RuntimeError):
    """Some series could not be cached; ``report`` says which (and what did get built)."""

    def __init__(self, message: str, report: "BuildReport") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)  # current key, bytes changed: rebuilt (or failed)
    centres_outside_volume: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "built": len(self.built),
            "fresh": len(self.fresh),
            "failed": dict(sorted(self.failed.items())),
            "damaged_rebuilt": dict(sorted(self.damaged.items())),
            "centres_outside_volume": self.centres_outside_volume,
            "seconds": round(self.seconds, 2),
        }


BODY_HU = -900.0  # above outside air (-1000, its noise within 10 HU on the embedded data), below lung
BODY_MARGIN = 8  # voxels of air kept around the body


def body_box(volume: np.ndarray, threshold_hu: float = BODY_HU, margin: int = BODY_MARGIN) -> tuple[slice, slice]:
    """The rows and columns of ``volume`` (I, R, C) that hold the body, with ``margin`` voxels of air.

    Outside the body a chest CT is air, which no training sample is centred on: on the
    1 x 1 x 1.25 mm grid, cutting the 120 development volumes to their bodies' boxes took them
    from 7.2 to 5.5 GiB, which (with label boxes instead of label volumes) keeps generating and
    preparing the training data within 25 GB. A row or column counts
    when at least one voxel in a thousand along it is above ``threshold_hu``, so a few noisy air
    voxels do not widen the box; a volume with none keeps every row and column.
    """
    above = volume > threshold_hu
    depth, rows, cols = volume.shape
    boxes = []
    for axis, length in ((1, rows), (2, cols)):
        counts = above.sum(axis=tuple(a for a in range(3) if a != axis))
        hit = np.flatnonzero(counts >= max(1, depth * (rows * cols // length) // 1000))
        if not len(hit):
            return slice(0, rows), slice(0, cols)
        boxes.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, length)))
    return boxes[0], boxes[1]


def _write_entry_sidecar(directory: Path, entry: dict[str, Any]) -> None:
    """The commit marker; a separate function so tests can simulate a crash right before it."""
    atomic_write_json(directory / ENTRY_FILE, entry)


def build_series_entry(
    series_uid: str,
    source_path: str | os.PathLike[str],
    centers_xyz: np.ndarray,
    cache_dir: str | os.PathLike[str],
    params: CacheParams,
    grid_spacing_xyz: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Read one CT, put it on the working grid and write its entry; returns a few stats. Runs in
    a worker process.

    The old sidecar is removed first, so from then until the new one lands the entry reads
    as missing, whatever the state of the data files.
    """
    from lungmonai.io import read_ct  # imported here: workers may start before io is needed
    from lungmonai.io.grid import to_grid
    from lungmonai.io.orient import to_lps

    directory = series_dir(cache_dir, series_uid)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (directory / ENTRY_FILE).unlink()
    remove_stale_temps(directory)

    key = entry_key(source_path, centers_xyz, params, grid_spacing_xyz)  # identity before the read: a change during it reads stale
    # The layout and grid inference analyses: a flipped NIfTI or a finer CT trains as it is scored.
    ct = to_grid(to_lps(read_ct(source_path)), grid_spacing_xyz)
    volume = clip_hu(ct.hu, params.hu_clip)
    centers = np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)
    crops = np.empty((len(centers), *params.crop_shape), dtype=np.int16)
    outside = 0
    if len(centers):
        centers_irc = xyz_to_irc(centers, ct.geometry).reshape(-1, 3)
        inside = np.all((centers_irc >= 0) & (centers_irc < np.asarray(volume.shape)), axis=1)
        outside = int((~inside).sum())
        for k, center_irc in enumerate(centers_irc):
            crops[k] = extract_crop(volume, center_irc, params.crop_shape, params.pad_value)
    # Crops come from the whole volume above; the volume kept is the body's box, placed by its geometry.
    rows, cols = body_box(volume)
    grid_shape = list(volume.shape)
    volume = np.ascontiguousarray(volume[:, rows, cols])
    geometry = Geometry(irc_to_xyz(np.array([0.0, rows.start, cols.start]), ct.geometry), ct.geometry.spacing_xyz,
                        ct.geometry.direction)
    checksums = {CROPS_FILE: atomic_save_npy_crc32(directory / CROPS_FILE, crops),
                 VOLUME_FILE: atomic_save_npy_crc32(directory / VOLUME_FILE, volume)}
    entry = {
        "format": CACHE_FORMAT,
        "series_uid": series_uid,
        "key": key,
        "geometry": {
            "origin_xyz": geometry.origin_xyz.tolist(),
            "spacing_xyz": geometry.spacing_xyz.tolist(),
            "direction": geometry.direction.tolist(),
        },
        "volume_shape": list(volume.shape),
        "grid_origin_xyz": ct.geometry.origin_xyz.tolist(),
        "grid_shape": grid_shape,
        "body_box_irc": [0, rows.start, cols.start],
        "centres_outside_volume": outside,
        "files": {name: (directory / name).stat().st_size for name in (CROPS_FILE, VOLUME_FILE)},
        "crc32": checksums,
        "crop_crc32": [crc32(crop) for crop in crops],
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_entry_sidecar(directory, entry)
    return {"series_uid": series_uid, "centres_outside_volume": outside}


def _damage(cache_dir: str | os.PathLike[str], series_uid: str) -> str | None:
    """``"<file>: <problem>"`` when the entry's data files differ from its recorded CRC-32s, else None."""
    entry = read_entry(cache_dir, series_uid)
    if entry is None:
        return f"{series_dir(cache_dir, series_uid) / ENTRY_FILE}: changed while it was checked"
    return damaged_file(series_dir(cache_dir, series_uid), entry)


def _describe_failure(source_path: Any, exc: BaseException) -> str:
    """Name the file once: CTReadError messages already are ``"<file>: <problem>"``."""
    from lungmonai.io.errors import CTReadError

    message = str(exc) or type(exc).__name__
    if isinstance(exc, CTReadError):
        return message
    if str(source_path) in message:
        return f"{type(exc).__name__}: {message}"
    return f"{source_path}: {type(exc).__name__}: {message}"


@contextlib.contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[tuple[Callable[..., Any], Callable[[list[Any]], Iterator[Any]]]]:
    """(submit, as_completed) for a process pool, a Dask cluster, or inline (workers == 1)."""
    if scheduler is not None:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_as_completed

        with Client(scheduler) as client:
            def submit(fn: Callable[..., Any], *args: Any) -> Any:
                return client.submit(fn, *args, pure=False)

            yield submit, lambda futures: iter(dask_as_completed(futures))
    elif workers <= 1:
        def run_now(fn: Callable[..., Any], *args: Any) -> Future:
            future: Future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - reported per series below
                future.set_exception(exc)
            return future

        yield run_now, lambda futures: iter(futures)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=process_context()) as pool:
            yield pool.submit, lambda futures: as_completed(futures)


def build_cache(
    table: pd.DataFrame,
    series_paths: Mapping[str, str | os.PathLike[str]],
    cache_dir: str | os.PathLike[str],
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    crop_shape: tuple[int, int, int] = (32, 48, 48),
    hu_clip: tuple[int, int] = (-1000, 1000),
    pad_value: int = -1000,
    grid_spacing_xyz: Sequence[float] | None = None,
    raise_on_error: bool = True,
) -> BuildReport:
    """Make every series of ``table`` fresh in ``cache_dir`` on the working grid
    ``grid_spacing_xyz`` (None: each CT's own voxels); skip the ones already fresh.

    ``table`` is the candidate table (crops follow its ``series_row`` order); ``series_paths``
    maps series uid to its CT (``lungmonai.io.find_series``). ``workers`` defaults to
    ``os.cpu_count()``; 1 builds in this process. ``scheduler`` (e.g. ``tcp://host:8786``)
    sends the work to a Dask distributed cluster instead, whose workers must see the same
    paths and have ``lungmonai`` importable. Raises :class:`CacheBuildError` after all
    series are done if any failed (``raise_on_error=False`` returns the report instead).
    """
    start = time.perf_counter()
    params = CacheParams(crop_shape, hu_clip, pad_value)
    reader = CropCache(cache_dir, crop_shape, hu_clip, pad_value, grid_spacing_xyz=grid_spacing_xyz)
    report = BuildReport()
    jobs: list[tuple[str, Path, np.ndarray]] = []
    current: list[tuple[str, Path, np.ndarray]] = []
    ordered = table.sort_values(["series_uid", "series_row"], kind="mergesort")
    for uid, rows in ordered.groupby("series_uid", sort=True):
        uid = str(uid)
        if not np.array_equal(rows["series_row"].to_numpy(), np.arange(len(rows))):
            report.failed[uid] = f"series {uid}: series_row is not 0..{len(rows) - 1}; rebuild the candidate table"
            continue
        centers = rows[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
        source = series_paths.get(uid)
        if source is None:
            report.failed[uid] = f"series {uid}: no CT file found for it"
            continue
        if reader.is_fresh(uid, source, centers):
            current.append((uid, Path(source), centers))
        else:
            jobs.append((uid, Path(source), centers))
    if current:  # read the current entries through (threads: zlib and file reads release the GIL)
        bar = progress(total=len(current), desc="checking cached series", unit="series")
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(workers or os.cpu_count() or 1, len(current)))) as pool:
                for job, problem in zip(current, pool.map(lambda job: _damage(cache_dir, job[0]), current)):
                    if problem is None:
                        report.fresh.append(job[0])
                    else:
                        report.damaged[job[0]] = problem
                        jobs.append(job)
                    bar.update(1)
        finally:
            bar.close()

    n_workers = max(1, min(workers or os.cpu_count() or 1, max(len(jobs), 1)))
    if jobs:
        with _executor(n_workers, scheduler) as (submit, completed):
            futures = {submit(build_series_entry, uid, str(src), c, str(cache_dir), params, grid_spacing_xyz): (uid, src)
                       for uid, src, c in jobs}
            bar = progress(total=len(jobs), desc="caching series", unit="series")
            try:
                for future in completed(list(futures)):
                    uid, src = futures[future]
                    exc = future.exception()
                    if exc is not None:
                        report.failed[uid] = _describe_failure(src, exc)
                    else:
                        report.built.append(uid)
                        report.centres_outside_volume += int(future.result()["centres_outside_volume"])
                    bar.update(1)
                    bar.set_postfix(failed=len(report.failed), refresh=False)
            finally:
                bar.close()
    for uid in report.fresh:
        entry = reader.entry(uid) if reader.has_entry(uid) else {}
        report.centres_outside_volume += int(entry.get("centres_outside_volume", 0))
    report.built.sort()
    report.seconds = time.perf_counter() - start
    if report.failed and raise_on_error:
        lines = "\n  ".join(report.failed[u] for u in sorted(report.failed))
        raise CacheBuildError(
            f"{len(report.failed)} series could not be cached ({len(report.built)} built, "
            f"{len(report.fresh)} already fresh, kept):\n  {lines}",
            report,
        )
    return report
