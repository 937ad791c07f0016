"""Seconds per generated CT (median, one core) in small and full mode.

    python bench/bench_synth.py [--small 6] [--full 2]

Times one series end to end in one process (phantom, LIDC masks, placement, candidates,
.mhd/.raw and mask writing); the one-off LIDC scan selection is reported apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import lungmonai  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lungmonai.synth.lidc_nodules import select_sources
from lungmonai.synth.series import SeriesTask, generate_series


def bench(mode: str, n: int, seed: int = 0) -> tuple[float, list[float], float]:
    t0 = time.perf_counter()
    sources = select_sources(n, seed)
    t_select = time.perf_counter() - t0
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(sources):
            res = generate_series(SeriesTask(i, src, mode, seed, tmp, 0, 20.0))
            times.append(res["seconds"])
    return float(np.median(times)), times, t_select


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=6, help="series to time in small mode")
    ap.add_argument("--full", type=int, default=2, help="series to time in full mode (0 to skip)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for mode, n in (("small", args.small), ("full", args.full)):
        if n <= 0:
            continue
        med, times, t_sel = bench(mode, n)
        print(f"{mode:5s}: median {med:6.2f} s/CT over {n} series "
              f"(min {min(times):.2f}, max {max(times):.2f}); LIDC selection {t_sel:.2f} s")


if __name__ == "__main__":
    main()
