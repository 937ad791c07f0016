"""Wall time of ``group_segmentation`` on a CT-sized probability volume.

    python bench/bench_grouping.py [--shape 250 512 512] [--repeats 3] [--nodules 40] [--speckle 0.001]

Builds a float32 probability volume (``--nodules`` balls of radius 2-8 voxels at p 0.6-1.0,
plus ``--speckle`` of the voxels set to p 0.5-1 at random, the one-voxel noise an uncertain
segmentation produces) and a random int16 HU volume, then times, median of ``--repeats``:
the threshold alone (a floor: one pass over the volume), the default (``method="auto"``),
the sparse path forced, and the ``method="ndimage"`` path (``scipy.ndimage.binary_erosion`` +
``label`` on the whole volume); all three must give the same frame.
Prints one JSON line. Goal: well under 1-2 s for 250x512x512 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from lungmonai.grouping import AUTO_SPARSE_FRACTION, group_segmentation  # noqa: E402
from lungmonai.io.volume import Geometry  # noqa: E402


def make_volume(shape: tuple[int, int, int], nodules: int, speckle: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = np.zeros(shape, dtype=np.float32)
    for _ in range(nodules):
        radius = int(rng.integers(2, 9))
        center = rng.integers(radius, np.array(shape) - radius)
        lo = center - radius
        hi = center + radius + 1
        ii, rr, cc = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        ball = (ii - center[0]) ** 2 + (rr - center[1]) ** 2 + (cc - center[2]) ** 2 <= radius**2
        region = prob[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        region[ball] = rng.uniform(0.6, 1.0)
    n_speckle = int(speckle * prob.size)
    flat = rng.integers(0, prob.size, n_speckle)
    prob.ravel()[flat] = rng.uniform(0.5, 1.0, n_speckle).astype(np.float32)
    hu = rng.integers(-1000, 400, size=shape, dtype=np.int16)
    return prob, hu


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(250, 512, 512))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodules", type=int, default=40)
    parser.add_argument("--speckle", type=float, default=0.001)
    parser.add_argument("--skip_ndimage", action="store_true")
    args = parser.parse_args(argv)

    prob, hu = make_volume(tuple(args.shape), args.nodules, args.speckle)
    geometry = Geometry(origin_xyz=(-180.0, -180.0, -300.0), spacing_xyz=(0.7, 0.7, 1.25))
    foreground = int((prob > 0.5).sum())

    t_thr, _ = timed(lambda: np.flatnonzero(prob > 0.5), args.repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_auto, frame = timed(lambda: group_segmentation(prob, hu, geometry, max_components=None), args.repeats)
        t_sparse, frame_sp = timed(
            lambda: group_segmentation(prob, hu, geometry, max_components=None, method="sparse"), args.repeats
        )
        result = {
            "shape": list(args.shape),
            "foreground_voxels": foreground,
            "foreground_fraction": round(foreground / prob.size, 5),
            "auto_picks": "sparse" if foreground <= AUTO_SPARSE_FRACTION * prob.size else "ndimage",
            "components": len(frame),
            "threshold_s": round(t_thr, 3),
            "default_s": round(t_auto, 3),
            "sparse_s": round(t_sparse, 3),
        }
        assert frame.equals(frame_sp)
        if not args.skip_ndimage:
            t_nd, frame_nd = timed(
                lambda: group_segmentation(prob, hu, geometry, max_components=None, method="ndimage"), args.repeats
            )
            result["ndimage_s"] = round(t_nd, 3)
            result["same_result"] = bool(frame.equals(frame_nd))
    result["cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result["loadavg_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
