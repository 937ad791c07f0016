"""What the cache's CRC-32s cost: writing a full-size volume with and without its checksum, checking
it when a process first opens it, and reading a crop with and without checking it.

    python bench/bench_cache_checksum.py [--shape 240 250 250] [--crops 300] [--reads 3000]

One series of ``--shape`` int16 voxels with ``--crops`` candidates is written to a temporary
LUNA16-format dataset (via tests/helpers) and cached on its own voxels. Prints medians in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from lungmonai.cache import CropCache, build_cache  # noqa: E402
from lungmonai.cache.atomic import atomic_save_npy, atomic_save_npy_crc32  # noqa: E402
from lungmonai.cache.crops import VOLUME_FILE, crc32, file_crc32  # noqa: E402
from lungmonai.io import find_series  # noqa: E402
from lungmonai.tables.candidates import build_candidate_table  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 250, 250), metavar=("I", "R", "C"))
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--reads", type=int, default=3000, help="crop reads per variant")
    parser.add_argument("--repeats", type=int, default=9, help="volume writes and checks per variant")
    args = parser.parse_args(argv)

    from tests.helpers import write_luna_dataset

    with tempfile.TemporaryDirectory(prefix="bench_checksum_") as tmp:
        root = Path(tmp)
        data = write_luna_dataset(root / "luna", n_series=1, shape_irc=tuple(args.shape), nodules_per_series=(1,),
                                  negatives_per_series=args.crops, noise_hu=300, include_missing_series=False)
        table, _ = build_candidate_table(data.root, find_series(data.root))
        build_cache(table, data.series, root / "cache", workers=1)
        uid = data.series_uids[0]
        volume, _ = CropCache(root / "cache").read_volume(uid)
        volume = np.array(volume)
        result: dict[str, float | int | list[int]] = {"volume_shape": list(volume.shape), "volume_mb": round(volume.nbytes / 1e6, 1)}
        result["volume_crc32_ms"] = median_ms(lambda: crc32(volume), args.repeats)
        result["volume_save_ms"] = median_ms(lambda: atomic_save_npy(root / "v.npy", volume), args.repeats)
        result["volume_save_with_crc32_ms"] = median_ms(lambda: atomic_save_npy_crc32(root / "v.npy", volume), args.repeats)
        volume_file = root / "cache" / "series" / uid / VOLUME_FILE
        result["volume_file_check_ms"] = median_ms(lambda: file_crc32(volume_file), args.repeats)

        rows = np.random.default_rng(0).integers(0, len(table), size=args.reads)
        checked, unchecked = CropCache(root / "cache"), CropCache(root / "cache", verify=False)
        checked.read_crop(uid, 0), unchecked.read_crop(uid, 0)  # open both
        times: dict[bool, list[float]] = {True: [], False: []}
        for row in rows:  # interleaved, so both see the same page cache and machine load
            for verify, cache in ((True, checked), (False, unchecked)):
                start = time.perf_counter()
                cache.read_crop(uid, int(row))
                times[verify].append(time.perf_counter() - start)
        result["crop_read_ms"] = 1000.0 * statistics.median(times[False])
        result["crop_read_checked_ms"] = 1000.0 * statistics.median(times[True])
    result["crop_check_overhead_ms"] = result["crop_read_checked_ms"] - result["crop_read_ms"]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
