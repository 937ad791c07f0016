"""The candidate table: annotations (positives) plus class-0 candidates (negatives), per series.

Follows the LUNA book's final chapter: positives come from ``annotations.csv`` (which carries
the nodule diameter), not from the class-1 rows of the candidates file, and negatives are the
class-0 candidates. Malignancy, when ``annotations_with_malignancy.csv`` is present, is
attached to each annotation by series and nearest centre. Rows whose series is not on disk
are dropped (and counted) so that no later stage trips over a missing CT.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.io.extent import Extent, inside

COLUMNS: tuple[str, ...] = (
    "series_uid",
    "center_x",
    "center_y",
    "center_z",
    "is_nodule",
    "has_annotation",
    "is_malignant",
    "diameter_mm",
    "series_row",
)
BOOL_COLUMNS = ("is_nodule", "has_annotation", "is_malignant")
FLOAT_COLUMNS = ("center_x", "center_y", "center_z", "diameter_mm")

CANDIDATE_FILES = ("candidates.csv", "candidates_V2.csv")
ANNOTATION_FILE = "annotations.csv"
MALIGNANCY_FILE = "annotations_with_malignancy.csv"
MINED_FILE = "candidates_mined.csv"  # in the prepared folder: see lungmonai.classification.mining

_XYZ = ["coordX", "coordY", "coordZ"]
CANDIDATE_COLUMNS = ["seriesuid", *_XYZ, "class"]
ANNOTATION_COLUMNS = ["seriesuid", *_XYZ, "diameter_mm"]
MALIGNANCY_COLUMNS = ["seriesuid", *_XYZ, "mal_bool"]
_NUMERIC_COLUMNS = {*_XYZ, "diameter_mm"}


class CandidateTableError(ValueError):
    """A CSV is missing, lacks columns or holds values that cannot be parsed."""


def read_luna_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a LUNA CSV keeping series uids as strings; fail naming the file and the columns."""
    try:
        frame = pd.read_csv(path, dtype={"seriesuid": str, "series_uid": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CandidateTableError(f"{path}: cannot read CSV: {exc}") from exc
    if not isinstance(frame.index, pd.RangeIndex):
        # Rows with one field more than the header make pandas take the first column as the
        # index and shift every value one column left: series uids read as x coordinates.
        raise CandidateTableError(f"{path}: data rows have {len(frame.columns) + 1} fields, the header "
                                  f"{len(frame.columns)} (line 2 onwards); every row needs the header's fields")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CandidateTableError(
            f"{path}: missing column(s) {missing}; expected at least {required}, found {list(frame.columns)}"
        )
    for column in required:
        if frame[column].isna().any():
            bad = int(frame[column].isna().sum())
            raise CandidateTableError(f"{path}: column {column!r} has {bad} empty or unparsable value(s)")
        if column in _NUMERIC_COLUMNS:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if numbers.isna().any():  # a typo such as "12.3.4" or a decimal comma
                rows = np.flatnonzero(numbers.isna().to_numpy())
                examples = ", ".join(f"line {r + 2}: {frame[column].iloc[r]!r}" for r in rows[:3])
                raise CandidateTableError(f"{path}: column {column!r} has {len(rows)} value(s) that are not numbers ({examples})")
            frame[column] = numbers.astype(np.float64)
    return frame


def find_candidates_file(dataset_dir: str | os.PathLike[str]) -> Path:
    """``candidates.csv`` (the book's file) if present, else ``candidates_V2.csv``."""
    dataset_dir = Path(dataset_dir)
    for name in CANDIDATE_FILES:
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    raise CandidateTableError(f"{dataset_dir}: no candidates file; expected one of {list(CANDIDATE_FILES)}")


def parse_bool_column(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """Parse True/False (any case, also 1/0) strings or bools; anything else is an error."""
    if values.dtype == bool:
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    bad = ~text.isin(list(mapping))
    if bad.any():
        examples = sorted(set(values[bad].astype(str)))[:5]
        raise CandidateTableError(f"{path}: column {column!r} holds non-boolean value(s) {examples}")
    return text.map(mapping).to_numpy(dtype=bool)


def match_malignancy(
    annotations: pd.DataFrame, malignancy: pd.DataFrame, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """For each annotation, ``mal_bool`` of the nearest malignancy row in the same series.

    A match must lie within the annotation's radius (at least 1 mm): the two tables list the
    same nodules with float noise in the centres, so anything farther is a different nodule.
    Returns the flags and which annotations found a match (unmatched ones get False).
    """
    flags = np.zeros(len(annotations), dtype=bool)
    matched = np.zeros(len(annotations), dtype=bool)
    mal_flags = parse_bool_column(malignancy["mal_bool"], path, "mal_bool")
    mal_xyz = malignancy[_XYZ].to_numpy(dtype=np.float64)
    by_series: dict[str, np.ndarray] = {
        uid: idx for uid, idx in malignancy.groupby("seriesuid", sort=False).indices.items()
    }
    ann_xyz = annotations[_XYZ].to_numpy(dtype=np.float64)
    ann_diam = annotations["diameter_mm"].to_numpy(dtype=np.float64)
    for i, uid in enumerate(annotations["seriesuid"].to_numpy()):
        rows = by_series.get(uid)
        if rows is None:
            continue
        dist = np.linalg.norm(mal_xyz[rows] - ann_xyz[i], axis=1)
        nearest = int(np.argmin(dist))
        if dist[nearest] <= max(ann_diam[i] / 2.0, 1.0):
            flags[i] = mal_flags[rows[nearest]]
            matched[i] = True
    return flags, matched


def _on_disk_uids(series_on_disk: Mapping[str, Any] | Collection[str]) -> set[str]:
    return set(series_on_disk.keys() if isinstance(series_on_disk, Mapping) else series_on_disk)


def order_and_number(table: pd.DataFrame) -> pd.DataFrame:
    """Canonical order (series, positives by descending diameter, then negatives) and ``series_row``.

    Ties are broken by the centre so the order never depends on the CSV's row order.
    """
    table = table.sort_values(
        ["series_uid", "is_nodule", "diameter_mm", "center_x", "center_y", "center_z"],
        ascending=[True, False, False, True, True, True],
        kind="mergesort",
    ).reset_index(drop=True)
    table["series_row"] = table.groupby("series_uid", sort=False).cumcount().astype(np.int64)
    return table[list(COLUMNS)]


def rows_outside(frame: pd.DataFrame, extents: Mapping[str, Extent]) -> np.ndarray:
    """(N,) bool: rows of a LUNA CSV whose centre lies outside their series' CT.

    Series without an extent (not on disk, or a header that cannot be read, which the cache
    build reports on its own) are not judged here.
    """
    outside = np.zeros(len(frame), dtype=bool)
    uids = frame["seriesuid"].astype(str).to_numpy()
    xyz = frame[_XYZ].to_numpy(dtype=np.float64)
    for uid in set(uids) & set(extents):
        rows = np.flatnonzero(uids == uid)
        outside[rows] = ~inside(xyz[rows], extents[uid])
    return outside


def describe_outside(path: Path, frame: pd.DataFrame, outside: np.ndarray, extents: Mapping[str, Extent],
                     what: str = "centre") -> list[str]:
    """One line per row outside: the file, the CSV line (header is line 1), the series, the centre
    and the CT's extent, so a person can find and fix the row."""
    lines = []
    for position in np.flatnonzero(outside):
        row = frame.iloc[position]
        uid = str(row["seriesuid"])
        xyz = ", ".join(f"{float(row[c]):.1f}" for c in _XYZ)
        lines.append(f"{path}: line {int(frame.index[position]) + 2}: series {uid}: {what} ({xyz}) mm "
                     f"lies outside its CT ({extents[uid].describe()})")
    return lines


def _rows(source: pd.DataFrame, *, is_nodule: bool, is_malignant: Any, diameter_mm: Any) -> pd.DataFrame:
    """Table rows for the LUNA CSV rows ``source``; positives carry an annotation, negatives do not."""
    return pd.DataFrame(
        {
            "series_uid": source["seriesuid"].astype(str).to_numpy(),
            "center_x": source["coordX"].to_numpy(np.float64),
            "center_y": source["coordY"].to_numpy(np.float64),
            "center_z": source["coordZ"].to_numpy(np.float64),
            "is_nodule": is_nodule,
            "has_annotation": is_nodule,
            "is_malignant": is_malignant,
            "diameter_mm": diameter_mm,
        }
    )


def build_candidate_table(
    dataset_dir: str | os.PathLike[str],
    series_on_disk: Mapping[str, Any] | Collection[str],
    *,
    candidates_file: str | os.PathLike[str] | None = None,
    extents: Mapping[str, Extent] | None = None,
    mined_file: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build the table from the dataset's CSVs, keeping only series in ``series_on_disk``.

    ``series_on_disk`` is typically ``lungmonai.io.find_series(dataset_dir)``.
    Returns the table and a summary of counts (including what was dropped and why).

    ``extents`` (series -> :class:`~lungmonai.io.extent.Extent`) judges the centres: an
    annotation outside its CT is an error (a nodule label that points at nothing), a class-0
    candidate outside is dropped and listed in the summary (it would train on an all-air crop).

    ``mined_file``: more class-0 candidates in the same columns (the pipeline's own false
    components, :mod:`lungmonai.classification.mining`), appended after the dataset's.
    """
    dataset_dir = Path(dataset_dir)
    cand_path = Path(candidates_file) if candidates_file is not None else find_candidates_file(dataset_dir)
    ann_path = dataset_dir / ANNOTATION_FILE
    if not ann_path.is_file():
        raise CandidateTableError(f"{ann_path}: annotations file not found (columns {ANNOTATION_COLUMNS})")
    candidates = read_luna_csv(cand_path, CANDIDATE_COLUMNS)
    annotations = read_luna_csv(ann_path, ANNOTATION_COLUMNS)

    mal_path = dataset_dir / MALIGNANCY_FILE
    matched = None
    if mal_path.is_file():
        malignancy = read_luna_csv(mal_path, MALIGNANCY_COLUMNS)
        is_malignant, matched = match_malignancy(annotations, malignancy, mal_path)
    else:
        is_malignant = np.zeros(len(annotations), dtype=bool)

    classes = pd.to_numeric(candidates["class"], errors="coerce")
    if classes.isna().any() or not classes.isin([0, 1]).all():
        raise CandidateTableError(f"{cand_path}: column 'class' must hold only 0 or 1")
    negatives = candidates[classes.to_numpy() == 0]
    mined = 0
    if mined_file is not None:
        extra = read_luna_csv(Path(mined_file), CANDIDATE_COLUMNS)
        if not pd.to_numeric(extra["class"], errors="coerce").eq(0).all():
            raise CandidateTableError(f"{mined_file}: mined candidates must all be class 0")
        negatives = pd.concat([negatives, extra], ignore_index=True)
        mined = len(extra)
    outside_lines: list[str] = []
    if extents is not None:
        ann_outside = rows_outside(annotations, extents)
        if ann_outside.any():
            first = describe_outside(ann_path, annotations, ann_outside, extents, "annotation centre")[0]
            raise CandidateTableError(f"{first} ({int(ann_outside.sum())} annotation(s) outside their CT)")
        neg_outside = rows_outside(negatives, extents)
        outside_lines = describe_outside(cand_path, negatives, neg_outside, extents, "candidate centre")
        negatives = negatives[~neg_outside]

    positives_frame = _rows(annotations, is_nodule=True, is_malignant=is_malignant,
                            diameter_mm=annotations["diameter_mm"].to_numpy(np.float64))
    negatives_frame = _rows(negatives, is_nodule=False, is_malignant=False, diameter_mm=0.0)
    table = pd.concat([positives_frame, negatives_frame], ignore_index=True)
    for column in BOOL_COLUMNS:
        table[column] = table[column].astype(bool)

    on_disk = _on_disk_uids(series_on_disk)
    malignancy_unmatched = (
        None if matched is None else int((~matched & annotations["seriesuid"].astype(str).isin(on_disk).to_numpy()).sum())
    )
    in_csvs = set(table["series_uid"])
    keep = table["series_uid"].isin(on_disk).to_numpy()
    dropped_series = sorted(in_csvs - on_disk)
    table = order_and_number(table[keep])

    summary: dict[str, Any] = {
        "candidates_file": str(cand_path),
        "annotations_file": str(ann_path),
        "malignancy_file": str(mal_path) if mal_path.is_file() else None,
        "series_on_disk": len(on_disk),
        "series_in_csvs": len(in_csvs),
        "series_in_table": int(table["series_uid"].nunique()),
        "series_on_disk_without_candidates": len(on_disk - in_csvs),
        "series_dropped_not_on_disk": len(dropped_series),
        "rows_dropped_not_on_disk": int((~keep).sum()),
        "dropped_series_examples": dropped_series[:5],
        "class1_candidates_ignored": int((classes == 1).sum()),
        "candidates": len(table),
        "positives": int(table["is_nodule"].sum()),
        "negatives": int((~table["is_nodule"]).sum()),
        "mined_negatives_read": mined,
        "malignant": int(table["is_malignant"].sum()),
        "annotations_without_malignancy_match": malignancy_unmatched,
        "rows_dropped_outside_ct": len(outside_lines),
        "rows_dropped_outside_ct_lines": outside_lines,
    }
    return table, summary


def validate_candidate_table(table: pd.DataFrame, source: str = "candidate table") -> pd.DataFrame:
    """Check columns, types and ``series_row`` numbering; return the table in canonical dtypes."""
    missing = [c for c in COLUMNS if c not in table.columns]
    extra = [c for c in table.columns if c not in COLUMNS]
    if missing or extra:
        raise CandidateTableError(
            f"{source}: columns must be exactly {list(COLUMNS)}; missing {missing}, unexpected {extra}"
        )
    table = table[list(COLUMNS)].copy()
    table["series_uid"] = table["series_uid"].astype(str)
    for column in FLOAT_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            raise CandidateTableError(f"{source}: column {column!r} has non-numeric or empty values")
        table[column] = values.astype(np.float64)
    for column in BOOL_COLUMNS:
        table[column] = parse_bool_column(table[column], Path(source), column)
    rows = pd.to_numeric(table["series_row"], errors="coerce")
    expected = table.groupby("series_uid", sort=False).cumcount()
    if rows.isna().any() or not (rows.to_numpy() == expected.to_numpy()).all():
        raise CandidateTableError(
            f"{source}: 'series_row' must number each series' rows 0, 1, ... in table order"
        )
    table["series_row"] = rows.astype(np.int64)
    return table


def save_candidate_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate, then write atomically (pandas writes round-trip float reprs, so a reload is exact)."""
    table = validate_candidate_table(table, str(path))
    return atomic_write_csv(path, table)


def load_candidate_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`save_candidate_table`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CandidateTableError(f"{path}: candidate table not found (run data_prep/prepare_luna.py)")
    frame = read_luna_csv(path, [])
    return validate_candidate_table(frame, str(path))


def centers_xyz(table: pd.DataFrame) -> np.ndarray:
    """(N, 3) float64 candidate centres in table order."""
    return table[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
