"""Cached crop reads vs uncached (read_ct + extract_crop) reads on the same candidates.

    python bench/bench_cache.py [--dataset_dir DATASET] [--n 500] [--n_uncached 20]

Without ``--dataset_dir`` a temporary LUNA16-format dataset of realistic size is written
(4 series of 512x512x150 int16, via tests/helpers) and removed afterwards. The cache is
built into a temporary directory (or ``--cache_dir``). Prints median reads/s of both and
their ratio; the goal is cached >= 50x uncached, which is what makes a training epoch over
~500k candidates I/O-cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for entry in (str(REPO),):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import numpy as np  # noqa: E402

from lungmonai.cache import CropCache, build_cache, clip_hu, extract_crop  # noqa: E402
from lungmonai.geometry import xyz_to_irc  # noqa: E402
from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.tables.candidates import build_candidate_table  # noqa: E402


def make_dataset(root: Path, n_series: int, slices: int) -> None:
    from tests.helpers import write_luna_dataset

    write_luna_dataset(
        root,
        n_series=n_series,
        shape_irc=(slices, 512, 512),
        spacing_xyz=(0.7, 0.7, 2.5),
        nodules_per_series=(3,),
        negatives_per_series=200,
        noise_hu=300,
        include_missing_series=False,
    )


def bench(dataset_dir: Path, cache_dir: Path, n: int, n_uncached: int, workers: int | None, seed: int) -> dict:
    series = find_series(dataset_dir)
    table, _ = build_candidate_table(dataset_dir, series)
    t0 = time.perf_counter()
    report = build_cache(table, series, cache_dir, workers=workers)
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    picks = table.iloc[rng.choice(len(table), size=min(n, len(table)), replace=False)]
    cached_times: list[float] = []
    for _ in range(3):  # a fresh reader each pass: includes opening the memmaps
        cache = CropCache(cache_dir)
        for uid, row in zip(picks.series_uid, picks.series_row):
            start = time.perf_counter()
            cache.read_crop(uid, row)
            cached_times.append(time.perf_counter() - start)

    uncached_times: list[float] = []
    for uid, x, y, z in picks[["series_uid", "center_x", "center_y", "center_z"]].head(n_uncached).itertuples(index=False):
        start = time.perf_counter()
        ct = read_ct(series[uid])
        crop = extract_crop(ct.hu, xyz_to_irc(np.array([x, y, z]), ct.geometry), (32, 48, 48))
        clip_hu(crop)
        uncached_times.append(time.perf_counter() - start)

    cached_rate = 1.0 / statistics.median(cached_times)
    uncached_rate = 1.0 / statistics.median(uncached_times)
    return {
        "series": len(series),
        "candidates": len(table),
        "cache_build_s": round(build_s, 2),
        "cache_built_series": len(report.built),
        "cached_reads": len(cached_times),
        "uncached_reads": len(uncached_times),
        "cached_reads_per_s_median": round(cached_rate, 1),
        "cached_reads_per_s_mean": round(len(cached_times) / sum(cached_times), 1),
        "uncached_reads_per_s_median": round(uncached_rate, 2),
        "ratio": round(cached_rate / uncached_rate, 1),
        "goal_ratio": 50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", type=Path, default=None)
    parser.add_argument("--cache_dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--n", type=int, default=500, help="candidates to read from the cache (x3 passes)")
    parser.add_argument("--n_uncached", type=int, default=20, help="of those, how many to read uncached")
    parser.add_argument("--series", type=int, default=4, help="series in the generated dataset")
    parser.add_argument("--slices", type=int, default=150, help="slices per generated series")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        tmp_path = Path(tmp)
        dataset_dir = args.dataset_dir
        if dataset_dir is None:
            dataset_dir = tmp_path / "luna"
            print(f"writing a {args.series} x 512x512x{args.slices} dataset to {dataset_dir}", file=sys.stderr)
            make_dataset(dataset_dir, args.series, args.slices)
        cache_dir = args.cache_dir or tmp_path / "cache"
        result = bench(dataset_dir, cache_dir, args.n, args.n_uncached, args.workers, args.seed)
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    print(
        f"cached {result['cached_reads_per_s_median']:.0f} reads/s, uncached "
        f"{result['uncached_reads_per_s_median']:.2f} reads/s, ratio {result['ratio']:.0f}x (goal >= 50x)"
    )
    return 0 if result["ratio"] >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
