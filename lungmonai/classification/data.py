"""Data lists for the bundles: candidate-table rows of one split part, as MONAI data dicts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lungmonai.data.prepared import require_prepared
from lungmonai.tables.candidates import load_candidate_table
from lungmonai.tables.splits import load_split


def candidate_items(
    prepared_dir: str | Path,
    parts: str | Sequence[str],
    nodules_only: bool = False,
    label_key: str = "label",
    label_column: str = "is_nodule",
) -> list[dict[str, Any]]:
    """Rows of the candidate table whose series the split puts in ``parts`` ("train", "val", ...).

    ``label_column`` picks what the network learns (``is_nodule`` for the nodule classifier,
    ``is_malignant`` for the malignancy model, which also sets ``nodules_only``).
    """
    prepared = require_prepared(prepared_dir)
    split = load_split(prepared / "split.json")
    wanted = [parts] if isinstance(parts, str) else list(parts)
    series = {uid for part in wanted for uid in split.series_in(part)}
    table = load_candidate_table(prepared / "candidates.csv")
    rows = table[table["series_uid"].isin(series)]
    if nodules_only:
        rows = rows[rows["is_nodule"]]
    return [
        {
            "series_uid": row.series_uid,
            "series_row": int(row.series_row),
            label_key: int(bool(getattr(row, label_column))),
            "is_nodule": int(bool(row.is_nodule)),
            "is_malignant": int(bool(row.is_malignant)),
            "diameter_mm": float(row.diameter_mm),
            "center_xyz": [float(row.center_x), float(row.center_y), float(row.center_z)],
        }
        for row in rows.itertuples(index=False)
    ]


def labels(items: Sequence[dict[str, Any]], key: str = "label") -> list[bool]:
    """The label of every item, for class-balanced samplers."""
    return [bool(item[key]) for item in items]
