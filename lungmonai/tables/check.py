"""Check a LUNA16-format dataset directory before anything expensive runs on it.

Downloads of LUNA16 (ten ~12 GB zips) are often incomplete: a subset only half unpacked, a
``.raw`` cut short, CSVs naming series that are not there. Each of those otherwise fails hours
into a cache build. The quick check finds them in seconds from headers and file sizes only.

The full check (the default) also finds what preparation or analysis would fail on later, or
worse accept silently: it reads every CT's voxels (NaN or out-of-range values, a corrupt
``.zraw``), parses the CSVs as preparation does (text in a coordinate column, a missing
column), counts each line's fields (an extra field on the first row silently shifts every
column), and checks that every centre lies inside its CT.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.io.errors import CTReadError
from lungmonai.io.extent import Extent
from lungmonai.io.metaimage import parse_header
from lungmonai.io.reader import read_ct
from lungmonai.progress import progress
from lungmonai.tables.candidates import (
    ANNOTATION_COLUMNS,
    ANNOTATION_FILE,
    CANDIDATE_COLUMNS,
    CANDIDATE_FILES,
    MALIGNANCY_COLUMNS,
    MALIGNANCY_FILE,
    CandidateTableError,
    describe_outside,
    parse_bool_column,
    read_luna_csv,
    rows_outside,
)

_EXAMPLES = 3  # problems of one kind in one file: the first few lines, then a count

DATA_SUFFIXES = (".raw", ".zraw")


@dataclass
class DatasetReport:
    dataset_dir: Path
    files_per_subset: dict[str, dict[str, int]] = field(default_factory=dict)
    series: int = 0
    csv_rows: dict[str, int] = field(default_factory=dict)
    candidates: int | None = None
    positives: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_dir": str(self.dataset_dir),
            "files_per_subset": self.files_per_subset,
            "series": self.series,
            "csv_rows": self.csv_rows,
            "candidates": self.candidates,
            "positives": self.positives,
            "problems": self.problems,
            "warnings": self.warnings,
        }

    def format(self) -> str:
        lines = [f"dataset: {self.dataset_dir}"]
        for subset, counts in sorted(self.files_per_subset.items()):
            lines.append(f"  {subset}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        lines.append(f"series (.mhd): {self.series}")
        for name, rows in self.csv_rows.items():
            lines.append(f"{name}: {rows} rows")
        if self.candidates is not None:
            lines.append(f"candidates: {self.candidates}")
        if self.positives is not None:
            lines.append(f"positives (annotations): {self.positives}")
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        for p in self.problems:
            lines.append(f"PROBLEM: {p}")
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s) found")
        return "\n".join(lines)


def check_mhd(path: Path) -> str | None:
    """A problem with one ``.mhd`` (unreadable header, missing or wrong-sized data file), or None."""
    try:
        header = parse_header(path)  # the reader's own parser: a header it accepts, check accepts
    except CTReadError as exc:
        return f"unreadable header: {exc}"
    data = header.data_file
    if data == path or header.compressed:  # LOCAL data or .zraw: no size to compare cheaply
        return None if data == path or data.is_file() else f"{path}: data file {data.name} is missing"
    if not data.is_file():
        return f"{path}: data file {data.name} is missing"
    size = data.stat().st_size
    expected = header.nbytes + header.data_offset
    if size != expected:
        kind = "truncated" if size < expected else "larger than its header says"
        return f"{data}: {kind}: {size} bytes, header promises {expected}"
    return None


def check_voxels(path: Path) -> tuple[str | None, Extent | None]:
    """Read the CT as the cache build will: a problem (NaN or out-of-range voxels, corrupt
    compressed data) or None, and the CT's extent when it could be read."""
    try:
        return None, Extent.of(read_ct(path))
    except CTReadError as exc:
        return f"unreadable CT: {exc}", None


def check_field_counts(path: Path) -> list[str]:
    """Lines whose number of fields differs from the header's. pandas fails on most of them, but
    an extra field on the first data line makes it take the first column as the index and shift
    every value one column left, silently."""
    problems = []
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            rows = csv.reader(handle)
            header = next(rows, [])
            bad = [(rows.line_num, len(r)) for r in rows if r and len(r) != len(header)]
    except (OSError, csv.Error) as exc:
        return [f"{path}: cannot read CSV: {exc}"]
    if bad:
        examples = ", ".join(f"line {line} has {n}" for line, n in bad[:_EXAMPLES])
        problems.append(f"{path}: {len(bad)} line(s) with a field count other than the header's {len(header)} ({examples})")
    return problems


def _required_columns(path: Path) -> list[str]:
    if path.name == ANNOTATION_FILE:
        return ANNOTATION_COLUMNS
    if path.name == MALIGNANCY_FILE:
        return MALIGNANCY_COLUMNS
    return CANDIDATE_COLUMNS


def check_csv_content(path: Path, extents: dict[str, Extent]) -> list[str]:
    """What preparation would refuse in ``path`` (unparsable values, missing columns, a class or
    malignancy flag that is not a boolean), and every centre outside its CT."""
    problems = check_field_counts(path)
    try:
        frame = read_luna_csv(path, _required_columns(path))
        if "class" in frame.columns and path.name != MALIGNANCY_FILE:
            classes = pd.to_numeric(frame["class"], errors="coerce")
            if classes.isna().any() or not classes.isin([0, 1]).all():
                raise CandidateTableError(f"{path}: column 'class' must hold only 0 or 1")
        if path.name == MALIGNANCY_FILE:
            parse_bool_column(frame["mal_bool"], path, "mal_bool")
    except CandidateTableError as exc:
        return [*problems, str(exc)]
    lines = describe_outside(path, frame, rows_outside(frame, extents), extents)
    if len(lines) > _EXAMPLES:
        lines = [*lines[:_EXAMPLES], f"{path}: {len(lines) - _EXAMPLES} more row(s) with a centre outside their CT"]
    return [*problems, *lines]


def _read_csv_series(path: Path) -> pd.Series | None:
    try:
        frame = pd.read_csv(path, usecols=["seriesuid"], dtype={"seriesuid": str})
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read a 'seriesuid' column: {exc}") from exc
    return frame["seriesuid"]


def check_dataset(
    dataset_dir: str | os.PathLike[str],
    *,
    allow_missing_series: bool = False,
    show_progress: bool = True,
    quick: bool = False,
) -> DatasetReport:
    """Count files and rows and list every missing or broken file (see :class:`DatasetReport`).

    ``allow_missing_series`` turns CSV rows naming series that are not on disk into warnings,
    for a deliberately partial download (e.g. subset0 only); the candidate table drops them.
    ``quick`` checks headers, file sizes and series names only; the full check also reads every
    CT and the CSVs' values (see the module's docstring).
    """
    root = Path(dataset_dir)
    report = DatasetReport(dataset_dir=root)
    if not root.is_dir():
        report.problems.append(f"{root}: dataset directory not found")
        return report
    subsets = sorted(p for p in root.glob("subset*") if p.is_dir())
    if any(p.is_file() and not p.name.startswith(".") for p in root.glob("*.mhd")):
        subsets.append(root)  # series directly in the dataset folder count, as find_series reads them
    if not subsets:
        report.problems.append(f"{root}: no subset*/ directories and no .mhd files")
    series: dict[str, Path] = {}
    mhds: list[Path] = []
    for subset in subsets:
        files = [p for p in subset.iterdir() if p.is_file() and not p.name.startswith(".")]
        if subset == root:
            files = [p for p in files if p.suffix.lower() in (".mhd", *DATA_SUFFIXES)]
        counts: dict[str, int] = {}
        for p in files:
            counts[p.suffix.lower() or "(none)"] = counts.get(p.suffix.lower() or "(none)", 0) + 1
        report.files_per_subset["(top level)" if subset == root else subset.name] = counts
        stems = {p.stem for p in files if p.suffix.lower() == ".mhd"}
        for p in sorted(files):
            if p.suffix.lower() == ".mhd":
                if p.stem in series:
                    report.problems.append(f"series {p.stem} found twice: {series[p.stem]} and {p}")
                series[p.stem] = p
                mhds.append(p)
            elif p.suffix.lower() in DATA_SUFFIXES and p.stem not in stems:
                report.warnings.append(f"{p}: data file without a .mhd header")
    report.series = len(series)
    extents: dict[str, Extent] = {}
    desc = "checking headers" if quick else "reading CTs"
    for path in progress(mhds, desc=desc, unit="file", disable=None if show_progress else True):
        problem = check_mhd(path)
        if problem is None and not quick:
            problem, extent = check_voxels(path)
            if extent is not None:
                extents[path.stem] = extent
        if problem:
            report.problems.append(problem)

    cand_files = [root / n for n in CANDIDATE_FILES if (root / n).is_file()]
    if not cand_files:
        report.problems.append(f"{root}: no candidates file (expected one of {list(CANDIDATE_FILES)})")
    if not (root / ANNOTATION_FILE).is_file():
        report.problems.append(f"{root / ANNOTATION_FILE}: annotations file not found")
    for path in [*cand_files, root / ANNOTATION_FILE, root / MALIGNANCY_FILE]:
        if not path.is_file():
            continue
        try:
            uids = _read_csv_series(path)
        except ValueError as exc:
            report.problems.append(str(exc))
            continue
        report.csv_rows[path.name] = len(uids)
        if uids.isna().any():
            lines = ", ".join(str(r + 2) for r in np.flatnonzero(uids.isna().to_numpy())[:3])
            report.problems.append(f"{path}: {int(uids.isna().sum())} row(s) without a seriesuid (line {lines})")
            uids = uids.dropna()
        missing = uids[~uids.isin(list(series))]
        if len(missing):
            examples = ", ".join(sorted(set(missing))[:3])
            (report.warnings if allow_missing_series else report.problems).append(
                f"{path}: {len(missing)} row(s) name {missing.nunique()} series not on disk (e.g. {examples})"
            )
        if not quick:
            report.problems.extend(check_csv_content(path, extents))
        if path in cand_files[:1]:
            report.candidates = len(uids)
        if path.name == ANNOTATION_FILE:
            report.positives = len(uids)
    return report
