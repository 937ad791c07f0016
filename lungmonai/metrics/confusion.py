"""The LUNA book's end-to-end confusion table (chapter 14, ``match_and_score``).

Rows are the truth, columns what the pipeline made of it:

=============  =============  ============  ================  ===================
truth \\ pred   Complete miss  Filtered out  Predicted benign  Predicted malignant
=============  =============  ============  ================  ===================
Non-nodule     (undefined)    ...           ...               ...
Benign         ...
Malignant      ...
=============  =============  ============  ================  ===================

- A detection *reaches* an annotated nodule when its distance (mm) to the nodule's centre is
  below ``radius_factor * diameter_mm`` (default 0.5: the nodule's radius, LUNA16's FROC rule;
  the book's code uses 0.7 diameters). A negative diameter means 10 mm, as in LUNA16.
- Each detection is classed: *filtered out* when ``p_nodule < nodule_threshold``, else
  *predicted malignant* when ``p_malignant >= malignancy_threshold``, else *predicted benign*
  (with no malignancy model, ``p_malignant=None``, every kept detection is "benign", i.e. just
  "nodule"). (The book's code compares ``p_malignant`` with the nodule threshold; here the
  malignancy threshold is used.)
- A nodule counts once, in the column of the "highest" detection reaching it (malignant >
  benign > filtered out), or in *complete miss* when none reaches it. A detection reaching
  two nodules counts for both.
- Detections reaching no nodule count in the Non-nodule row (filtered out / benign /
  malignant); detections reaching only an excluded (irrelevant) finding, when ``excluded`` is
  given, are not counted at all. The Non-nodule row's complete-miss cell is undefined: 0 in
  the array, ``-`` in :func:`format_confusion`, ``None`` in :func:`confusion_to_dict`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.metrics.froc import TRUTH_COLUMNS, by_scan, hit_matrix, normalise_columns

CONFUSION_ROWS: tuple[str, ...] = ("Non-nodule", "Benign", "Malignant")
CONFUSION_COLUMNS: tuple[str, ...] = ("Complete miss", "Filtered out", "Predicted benign", "Predicted malignant")

_MALIGNANT_ALIASES = ("mal_bool", "is_malignant")


def detection_classes(
    p_nodule: np.ndarray,
    p_malignant: np.ndarray | None = None,
    *,
    nodule_threshold: float = 0.5,
    malignancy_threshold: float = 0.5,
) -> np.ndarray:
    """Column index per detection: 1 filtered out, 2 predicted benign, 3 predicted malignant."""
    p_nodule = np.asarray(p_nodule, dtype=np.float64).reshape(-1)
    kept = p_nodule >= nodule_threshold
    if p_malignant is None:
        malignant = np.zeros(p_nodule.shape, dtype=bool)
    else:
        p_malignant = np.asarray(p_malignant, dtype=np.float64).reshape(-1)
        if p_malignant.shape != p_nodule.shape:
            raise ValueError(f"p_malignant has {p_malignant.size} values, p_nodule {p_nodule.size}")
        malignant = p_malignant >= malignancy_threshold
    return np.where(~kept, 1, np.where(malignant, 3, 2)).astype(np.int64)


def _reach(centre_xyz: np.ndarray, diameter_mm: np.ndarray, detection_xyz: np.ndarray, radius_factor: float) -> np.ndarray:
    centre_xyz = np.asarray(centre_xyz, dtype=np.float64).reshape(-1, 3)
    detection_xyz = np.asarray(detection_xyz, dtype=np.float64).reshape(-1, 3)
    diameter = np.asarray(diameter_mm, dtype=np.float64).reshape(-1)
    if diameter.size != centre_xyz.shape[0]:
        raise ValueError(f"{centre_xyz.shape[0]} nodule centres but {diameter.size} diameters")
    return hit_matrix(centre_xyz, diameter, detection_xyz, radius_factor)


def confusion_for_ct(
    truth_xyz: np.ndarray,
    truth_diameter_mm: np.ndarray,
    truth_malignant: np.ndarray,
    detection_xyz: np.ndarray,
    p_nodule: np.ndarray,
    p_malignant: np.ndarray | None = None,
    *,
    nodule_threshold: float = 0.5,
    malignancy_threshold: float = 0.5,
    radius_factor: float = 0.5,
    excluded_xyz: np.ndarray | None = None,
    excluded_diameter_mm: np.ndarray | None = None,
) -> np.ndarray:
    """The (3, 4) int64 table of one CT (rows :data:`CONFUSION_ROWS`, columns :data:`CONFUSION_COLUMNS`).

    ``truth_*``: the CT's annotated nodules (centre mm, diameter mm, malignant flag);
    ``detection_xyz`` / ``p_nodule`` / ``p_malignant``: its candidates after classification.
    """
    truth_malignant = np.asarray(truth_malignant).astype(bool).reshape(-1)
    detection_xyz = np.asarray(detection_xyz, dtype=np.float64).reshape(-1, 3)
    classes = detection_classes(
        p_nodule, p_malignant, nodule_threshold=nodule_threshold, malignancy_threshold=malignancy_threshold
    )
    if classes.size != detection_xyz.shape[0]:
        raise ValueError(f"{detection_xyz.shape[0]} detections but {classes.size} p_nodule values")
    reach = _reach(truth_xyz, truth_diameter_mm, detection_xyz, radius_factor)
    if reach.shape[0] != truth_malignant.size:
        raise ValueError(f"{reach.shape[0]} nodules but {truth_malignant.size} malignancy flags")
    confusion = np.zeros((3, 4), dtype=np.int64)
    # Each nodule: the highest class among the detections reaching it, 0 (complete miss) if none.
    nodule_class = np.where(reach, classes[None, :], 0).max(axis=1) if classes.size else np.zeros(reach.shape[0], np.int64)
    np.add.at(confusion, (np.where(truth_malignant, 2, 1), nodule_class), 1)
    unmatched = ~reach.any(axis=0)
    if excluded_xyz is not None and len(np.asarray(excluded_xyz).reshape(-1, 3)):
        if excluded_diameter_mm is None:
            raise ValueError("excluded_xyz given without excluded_diameter_mm")
        unmatched &= ~_reach(excluded_xyz, excluded_diameter_mm, detection_xyz, radius_factor).any(axis=0)
    np.add.at(confusion, (0, classes[unmatched]), 1)
    return confusion


def sum_confusion(matrices: Iterable[np.ndarray]) -> np.ndarray:
    """Sum of per-CT tables (a zero table when there are none)."""
    total = np.zeros((3, 4), dtype=np.int64)
    for matrix in matrices:
        matrix = np.asarray(matrix)
        if matrix.shape != (3, 4):
            raise ValueError(f"confusion tables are (3, 4), got {matrix.shape}")
        total += matrix.astype(np.int64)
    return total


def confusion_table(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    series_uids: Iterable[str],
    *,
    excluded: pd.DataFrame | None = None,
    nodule_threshold: float = 0.5,
    malignancy_threshold: float = 0.5,
    radius_factor: float = 0.5,
    p_nodule_column: str = "p_nodule",
    p_malignant_column: str | None = "p_malignant",
) -> np.ndarray:
    """:func:`confusion_for_ct` over ``series_uids``, summed.

    ``detections``: seriesuid (or series_uid), coordX/Y/Z (or center_x/y/z), ``p_nodule_column``
    and, unless ``p_malignant_column`` is None or absent, ``p_malignant_column``.
    ``annotations``: seriesuid, coordX/Y/Z, diameter_mm and mal_bool (or is_malignant).
    Rows of scans outside ``series_uids`` are ignored.
    """
    det = normalise_columns(detections, ["seriesuid", "coordX", "coordY", "coordZ"], "detections")
    if p_nodule_column not in det.columns:
        raise KeyError(f"detections: missing column {p_nodule_column!r}")
    use_mal = p_malignant_column is not None and p_malignant_column in det.columns
    ann = normalise_columns(annotations, TRUTH_COLUMNS, "annotations")
    mal_col = next((c for c in _MALIGNANT_ALIASES if c in ann.columns), None)
    if mal_col is None:
        raise KeyError(f"annotations: missing a malignancy column ({' or '.join(_MALIGNANT_ALIASES)})")
    if ann[mal_col].isna().any():  # astype(bool) would count an unknown rating as malignant
        raise ValueError(f"annotations: {int(ann[mal_col].isna().sum())} row(s) without a {mal_col} value")
    det_groups = by_scan(det)
    ann_groups = by_scan(ann)
    exc_groups = by_scan(normalise_columns(excluded, TRUTH_COLUMNS, "excluded")) if excluded is not None else {}
    xyz = ["coordX", "coordY", "coordZ"]
    tables = []
    for uid in dict.fromkeys(str(s) for s in series_uids):
        d = det_groups.get(uid, det.iloc[:0])
        a = ann_groups.get(uid, ann.iloc[:0])
        e = exc_groups.get(uid)
        tables.append(
            confusion_for_ct(
                a[xyz].to_numpy(np.float64),
                a["diameter_mm"].to_numpy(np.float64),
                a[mal_col].to_numpy().astype(bool),
                d[xyz].to_numpy(np.float64),
                d[p_nodule_column].to_numpy(np.float64),
                d[p_malignant_column].to_numpy(np.float64) if use_mal else None,
                nodule_threshold=nodule_threshold,
                malignancy_threshold=malignancy_threshold,
                radius_factor=radius_factor,
                excluded_xyz=e[xyz].to_numpy(np.float64) if e is not None else None,
                excluded_diameter_mm=e["diameter_mm"].to_numpy(np.float64) if e is not None else None,
            )
        )
    return sum_confusion(tables)


def confusion_summary(matrix: np.ndarray) -> dict[str, float | int | None]:
    """Derived figures: nodules, reached / kept / called-malignant fractions, FPs kept."""
    m = np.asarray(matrix, dtype=np.int64)
    nodules = int(m[1:].sum())
    malignant = int(m[2].sum())
    ratio = lambda a, b: float(a) / b if b else None  # noqa: E731
    return {
        "nodules": nodules,
        "malignant": malignant,
        "non_nodule_detections": int(m[0, 1:].sum()),
        "nodule_reached": ratio(m[1:, 1:].sum(), nodules),
        "nodule_kept": ratio(m[1:, 2:].sum(), nodules),
        "malignant_kept": ratio(m[2, 2:].sum(), malignant),
        "malignant_called_malignant": ratio(m[2, 3], malignant),
        "non_nodules_kept": int(m[0, 2:].sum()),
        "non_nodules_called_malignant": int(m[0, 3]),
    }


def confusion_to_dict(matrix: np.ndarray) -> dict[str, Any]:
    """JSON-friendly form: rows, columns, the matrix (undefined cell None), per-cell counts, summary."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (3, 4):
        raise ValueError(f"confusion tables are (3, 4), got {m.shape}")
    cells = [[None if (r == 0 and c == 0) else int(m[r, c]) for c in range(4)] for r in range(3)]
    return {
        "rows": list(CONFUSION_ROWS),
        "columns": list(CONFUSION_COLUMNS),
        "matrix": cells,
        "counts": {row: dict(zip(CONFUSION_COLUMNS, cells[r])) for r, row in enumerate(CONFUSION_ROWS)},
        "summary": confusion_summary(m),
    }


def confusion_from_dict(data: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`confusion_to_dict` (None read as 0)."""
    return np.asarray([[0 if v is None else int(v) for v in row] for row in data["matrix"]], dtype=np.int64)


def format_confusion(matrix: np.ndarray, *, title: str | None = None) -> str:
    """Aligned text table for the console (undefined cell shown as ``-``), with row totals."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (3, 4):
        raise ValueError(f"confusion tables are (3, 4), got {m.shape}")
    header = ["truth \\ pred", *CONFUSION_COLUMNS, "Total"]
    body = []
    for r, row in enumerate(CONFUSION_ROWS):
        cells = ["-" if (r == 0 and c == 0) else str(int(m[r, c])) for c in range(4)]
        body.append([row, *cells, str(int(m[r].sum()))])
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]

    def fmt(line: list[str]) -> str:
        return " | ".join([line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])])

    rule = "-+-".join("-" * w for w in widths)
    lines = ([title] if title else []) + [fmt(header), rule] + [fmt(line) for line in body]
    return "\n".join(lines)
