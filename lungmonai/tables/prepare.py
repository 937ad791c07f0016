"""Prepare a dataset once: candidate table, the split (made only once), and the cache.

The logic behind ``data_prep/prepare_luna.py`` and ``data_prep/prepcache.py``, kept here so
that tests and the demo call the same code as the command line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from lungmonai.cache.atomic import atomic_write_json
from lungmonai.cache.build import BuildReport, build_cache
from lungmonai.cache.crops import grid_json
from lungmonai.io.errors import CTReadError
from lungmonai.io.extent import Extent, read_extent
from lungmonai.tables.candidates import MINED_FILE, build_candidate_table, load_candidate_table, save_candidate_table
from lungmonai.tables.splits import load_split, make_split, save_split, split_counts

TABLE_FILE = "candidates.csv"
SPLIT_FILE = "split.json"
SUMMARY_FILE = "summary.json"
CACHE_DIR = "cache"
FROM_CONTRACT = "contract"  # the working grid of the bundles' contract (lungmonai.config.find_bundles)


def _grid(grid_spacing_xyz: Sequence[float] | None | str) -> Sequence[float] | None:
    if grid_spacing_xyz != FROM_CONTRACT:
        return grid_spacing_xyz  # type: ignore[return-value]
    from lungmonai.config import contract, find_bundles

    return contract(find_bundles())["grid_spacing_xyz"]


def series_extents(series_paths: Mapping[str, Path]) -> dict[str, Extent]:
    """Each series' extent from its header, to judge the CSVs' centres before anything is cropped.
    A series whose header cannot be read is left out: the cache build names it as failed."""
    extents = {}
    for uid, path in series_paths.items():
        try:
            extents[uid] = read_extent(path)
        except CTReadError:
            continue
    return extents


def _require_dataset_dir(dataset_dir: str | os.PathLike[str]) -> None:
    if not Path(dataset_dir).is_dir():
        raise FileNotFoundError(f"{dataset_dir}: dataset directory not found")


def default_prepared_dir(dataset_dir: str | os.PathLike[str]) -> Path:
    return Path(dataset_dir) / "prepared"


def prepare_cache(
    dataset_dir: str | os.PathLike[str],
    prepared_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    grid_spacing_xyz: Sequence[float] | None | str = FROM_CONTRACT,
) -> BuildReport:
    """Build (or resume) the cache on the working grid from an existing candidate table;
    returns the report."""
    from lungmonai.io import find_series

    prepared = Path(prepared_dir) if prepared_dir is not None else default_prepared_dir(dataset_dir)
    _require_dataset_dir(dataset_dir)
    table = load_candidate_table(prepared / TABLE_FILE)
    return build_cache(
        table,
        find_series(dataset_dir),
        Path(cache_dir) if cache_dir is not None else prepared / CACHE_DIR,
        workers=workers,
        scheduler=scheduler,
        grid_spacing_xyz=_grid(grid_spacing_xyz),
        raise_on_error=False,
    )


def prepare_dataset(
    dataset_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    split_mode: str = "stratified",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    new_split: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    cache: bool = True,
    grid_spacing_xyz: Sequence[float] | None | str = FROM_CONTRACT,
) -> dict[str, Any]:
    """Table + split + cache (on the working grid ``grid_spacing_xyz``: by default the bundles'
    contract's, None for each CT's own voxels) + ``summary.json``; returns the summary.

    An existing ``split.json`` is kept unless ``new_split``: every stage and every earlier
    result refer to it, so silently re-dealing the series would leak evaluation scans into
    training. Series the kept split does not know are listed in the summary.
    """
    from lungmonai.io import find_series

    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_prepared_dir(dataset_dir)
    _require_dataset_dir(dataset_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory (the prepared table, split and cache go in a folder)")
    if out.resolve() == Path(dataset_dir).resolve():
        # The prepared table is named candidates.csv too: it would replace LUNA16's own file.
        raise ValueError(f"{out}: the prepared directory cannot be the dataset directory itself "
                         f"(its {TABLE_FILE} would be overwritten); use {default_prepared_dir(dataset_dir)}")
    out.mkdir(parents=True, exist_ok=True)
    series_paths = find_series(dataset_dir)
    mined = out / MINED_FILE  # the pipeline's own false components, when a recipe has mined them
    table, table_summary = build_candidate_table(dataset_dir, series_paths, extents=series_extents(series_paths),
                                                 mined_file=mined if mined.is_file() else None)

    split_path = out / SPLIT_FILE  # read (and refused) before anything is written
    if split_path.is_file() and not new_split:
        split = load_split(split_path)
        split_action = "kept existing"
    else:
        split = make_split(table, mode=split_mode, seed=seed, fractions=fractions, extra_series=series_paths)
        split_action = "made new"
    save_candidate_table(table, out / TABLE_FILE)
    if split_action == "made new":
        save_split(split, split_path)
    unknown = sorted(set(series_paths) - set(split.all_series))

    summary: dict[str, Any] = {
        "dataset_dir": str(Path(dataset_dir)),
        "prepared_dir": str(out),
        "table": table_summary,
        "split": {
            "file": str(split_path),
            "action": split_action,
            "mode": split.mode,
            "seed": split.seed,
            "sets": split_counts(split, table),
            "series_on_disk_not_in_split": len(unknown),
            "series_on_disk_not_in_split_examples": unknown[:5],
        },
    }
    if cache:
        grid_spacing_xyz = _grid(grid_spacing_xyz)
        report = build_cache(table, series_paths, out / CACHE_DIR, workers=workers, scheduler=scheduler,
                             grid_spacing_xyz=grid_spacing_xyz, raise_on_error=False)
        summary["cache"] = {"dir": str(out / CACHE_DIR), "grid_spacing_xyz": grid_json(grid_spacing_xyz), **report.to_json()}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for a person: what is on disk, what was dropped, how the split looks."""
    t = summary["table"]
    lines = [
        f"series on disk: {t['series_on_disk']}  (dropped from CSVs, not on disk: {t['series_dropped_not_on_disk']} series, {t['rows_dropped_not_on_disk']} rows)",
        f"candidates: {t['candidates']}  positives: {t['positives']}  negatives: {t['negatives']}  malignant: {t['malignant']}",
        f"split ({summary['split']['action']}, mode {summary['split']['mode']}, seed {summary['split']['seed']}): "
        + ", ".join(
            f"{name} {c['series']} series / {c.get('positives', 0)} nodules / {c.get('malignant', 0)} malignant"
            for name, c in summary["split"]["sets"].items()
        ),
    ]
    outside = t.get("rows_dropped_outside_ct_lines", [])
    if outside:
        lines.append(f"WARNING: {len(outside)} candidate row(s) lie outside their CT, dropped from training:")
        lines.extend(f"  {line}" for line in outside)
    if summary["split"]["series_on_disk_not_in_split"]:
        lines.append(f"WARNING: {summary['split']['series_on_disk_not_in_split']} series on disk are not in the kept split (use --new_split to re-deal)")
    if "cache" in summary:
        c = summary["cache"]
        grid = "each CT's own voxels" if c.get("grid_spacing_xyz") is None else f"{c['grid_spacing_xyz']} mm"
        lines.append(f"cache ({grid}): {c['built']} built, {c['fresh']} already fresh, {len(c['failed'])} failed, in {c['seconds']} s")
        for uid, message in c.get("damaged_rebuilt", {}).items():
            lines.append(f"  DAMAGED, rebuilt {uid}: {message}")
        for uid, message in c["failed"].items():
            lines.append(f"  FAILED {uid}: {message}")
    lines.append(f"written to {summary['prepared_dir']}")
    return "\n".join(lines)
