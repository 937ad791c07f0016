"""Seconds and peak memory to segment one full-size chest CT (512x512x~250) on this machine.

    python bench/bench_segment.py [--ct PATH] [--ckpt bundles/nodule_seg/models/model.pt]
                                  [--threads 2] [--batch_size 16] [--full]

Without ``--ct`` one full-size series of the embedded dataset is generated once (``--mode
full``: 512x512 slices at real LIDC spacing) into ``--work_dir`` and reused. The network is
the bundle's (``inference.json``) with the trained weights when ``--ckpt`` exists, else
untrained (same cost). Prints the CT read time, the segmentation time restricted to the lung
box (what the pipeline runs) and, with ``--full``, over every voxel; and the process's peak
RSS. The end-to-end analysis must fit 30 s, so segmentation must take a fraction of that.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.segmentation.inference import load_segmenter, segment_ct  # noqa: E402
from lungmonai.segmentation.roi import lung_box  # noqa: E402


def full_size_ct(work_dir: Path, seed: int) -> Path:
    """The one series of a full-mode generated dataset in ``work_dir`` (generated if absent)."""
    if not find_series(work_dir):
        subprocess.run(
            [sys.executable, str(REPO / "data_prep/make_synthetic_luna.py"), "--out", str(work_dir), "--series", "1",
             "--mode", "full", "--seed", str(seed), "--workers", "1"],
            check=True, cwd=REPO,
        )
    return next(iter(find_series(work_dir).values()))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, help="a CT read_ct reads; default: a generated full-size series")
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/lungmonai_bench_segment"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--bundle_root", type=Path, default=REPO / "bundles/nodule_seg")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: BUNDLE_ROOT/models/model.pt if present")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is reported")
    parser.add_argument("--max_slices", type=int, default=250,
                        help="keep the central N slices (0: all), so CTs of any length time like a ~250-slice one")
    parser.add_argument("--full", action="store_true", help="also time segmentation of every voxel (no lung box)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    ct_path = args.ct or full_size_ct(args.work_dir, args.seed)
    start = time.perf_counter()
    ct = read_ct(ct_path)
    read_s = time.perf_counter() - start
    if args.max_slices and ct.hu.shape[0] > args.max_slices:
        first = (ct.hu.shape[0] - args.max_slices) // 2
        ct = replace(ct, hu=np.ascontiguousarray(ct.hu[first : first + args.max_slices]))
    ckpt = args.ckpt or args.bundle_root / "models/model.pt"
    network, settings = load_segmenter(args.bundle_root, ckpt if ckpt.is_file() else None)
    rss_before = peak_rss_mb()

    box = lung_box(ct.hu, ct.geometry.spacing_irc)
    box_share = float(np.prod([s.stop - s.start for s in box]) / np.prod(ct.hu.shape))

    def timed(restrict: bool) -> tuple[float, np.ndarray]:
        best, prob = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            prob = segment_ct(ct, network, "cpu", args.batch_size, settings["context"], settings["hu_window"],
                              restrict_to_lungs=restrict)
            best = min(best, time.perf_counter() - t0)
        return best, prob

    lung_s, prob = timed(True)
    result = {
        "ct": str(ct_path),
        "shape_irc": list(ct.hu.shape),
        "slices_timed": int(ct.hu.shape[0]),
        "spacing_xyz": [round(v, 3) for v in ct.geometry.spacing_xyz.tolist()],
        "weights": str(ckpt) if ckpt.is_file() else "untrained",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "read_ct_s": round(read_s, 2),
        "lung_box_share_of_volume": round(box_share, 3),
        "segment_lungs_s": round(lung_s, 2),
        "marked_voxels": int((prob >= settings["threshold"]).sum()),
    }
    if args.full:
        result["segment_full_s"] = round(timed(False)[0], 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["peak_rss_before_segmenting_mb"] = round(rss_before, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
