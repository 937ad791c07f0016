"""Seconds and peak RSS for the whole analysis of one full-size chest CT (512x512x~250).

    python bench/bench_pipeline.py [--ct PATH] [--slices 250] [--threads 2]

Reads the CT, segments, groups, classifies and rates malignancy, writes the reports, exactly as
``lungmonai analyze`` does, with the bundles' trained weights (untrained copies of the same
networks when a bundle has none yet: the cost is the same). Without ``--ct`` it generates one
full-size series of the embedded dataset (512x512 at a real LIDC spacing) and keeps ``--slices``
central slices, the ~250 of a typical LUNA16 scan. Target: <= 30 s and <= 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from bench_segment import full_size_ct  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402

from lungmonai.cli import bundle_settings  # noqa: E402
from lungmonai.io import read_ct  # noqa: E402
from lungmonai.io.volume import CTVolume  # noqa: E402
from lungmonai.pipeline import analyze_ct, load_models  # noqa: E402
from lungmonai.pipeline.report import write_reports  # noqa: E402


def _bundles_with_weights(work: Path) -> Path:
    """The repository's bundles, with untrained weights standing in for any not trained yet."""
    bundles = work / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "bundles/contract.json", bundles / "contract.json")
    for name in ("nodule_seg", "nodule_cls", "nodule_malignancy"):
        src = REPO / "bundles" / name
        shutil.copytree(src / "configs", bundles / name / "configs", dirs_exist_ok=True)
        (bundles / name / "models").mkdir(parents=True, exist_ok=True)
        trained = src / "models/model.pt"
        if trained.is_file():
            shutil.copy(trained, bundles / name / "models/model.pt")
        else:
            parser = ConfigParser()
            parser.read_config(str(src / "configs/inference.json"))
            parser["bundles_dir"] = str(bundles)
            torch.save(parser.get_parsed_content("network_def").state_dict(), bundles / name / "models/model.pt")
            print(f"{name}: no trained weights, timing an untrained copy")
    return bundles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ct", type=Path)
    ap.add_argument("--work_dir", type=Path, default=Path("/tmp/lungmonai_bench_segment"))
    ap.add_argument("--slices", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ct = read_ct(args.ct or full_size_ct(args.work_dir, seed=3))
    if ct.hu.shape[0] > args.slices:
        start = (ct.hu.shape[0] - args.slices) // 2
        ct = CTVolume(ct.hu[start:start + args.slices].copy(), ct.geometry, ct.source, ct.series_uid)
    print(f"CT {ct.hu.shape} (index,row,col), spacing_xyz {ct.geometry.spacing_xyz.round(3).tolist()}")
    with tempfile.TemporaryDirectory() as tmp:
        models = load_models(_bundles_with_weights(Path(tmp)), device="cpu")
        settings = bundle_settings()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        totals = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            analysis = analyze_ct(ct, models, settings)
            write_reports(analysis, Path(tmp) / "out", settings)
            totals.append(time.perf_counter() - start)
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in analysis.seconds.items())
            print(f"  {totals[-1]:.1f} s ({steps}; {len(analysis.candidates)} candidates)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole analysis: median {statistics.median(totals):.1f} s over {args.repeats} runs, "
          f"{args.threads} threads; peak RSS {peak / 1024:.2f} GB (process before analysis {rss_before / 1024:.2f} GB)")


if __name__ == "__main__":
    main()
