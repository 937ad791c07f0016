"""Hard negatives: the pipeline's own false candidates on the training series.

The classifier learns from the dataset's candidate table (LUNA16's ``candidates.csv`` or the
generator's): detector hits on vessels, pleura, scars and parenchyma. At inference it ranks the
segmentation's components instead, which reach places that table never samples (airway walls,
the mediastinum's edge, partial-volume rims), and an end-to-end FROC is decided by the few
false components it ranks highest. So the trained pipeline is run over the *training* series,
and on each CT the components it scores highest that lie on no nodule become class-0
candidates of the next training (``prepared/candidates_mined.csv``, LUNA16 columns), which the
candidate table takes in beside the dataset's own (:func:`lungmonai.tables.prepare.prepare_dataset`).

Only training series are mined: validation and held-out series stay as the pipeline meets
them. A component is kept away from every annotation by twice the FROC's hit radius (its
diameter), and from LUNA16's excluded findings by the same rule, so a fragment of a nodule
never becomes a negative.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.grouping import ComponentCapWarning
from lungmonai.io import find_series, read_ct
from lungmonai.metrics.froc import hit_matrix
from lungmonai.progress import progress
from lungmonai.tables.candidates import (ANNOTATION_COLUMNS, ANNOTATION_FILE, CANDIDATE_COLUMNS, MINED_FILE,
                                        read_luna_csv)
from lungmonai.tables.splits import load_split

_XYZ = ["coordX", "coordY", "coordZ"]


def _far_from(findings: pd.DataFrame, xyz: np.ndarray) -> np.ndarray:
    """Which of ``xyz`` lie farther than each finding's diameter (twice the hit radius) from all."""
    if findings.empty or not len(xyz):
        return np.ones(len(xyz), dtype=bool)
    near = hit_matrix(findings[_XYZ].to_numpy(np.float64), findings["diameter_mm"].to_numpy(np.float64), xyz,
                      radius_factor=1.0)
    return ~near.any(axis=0)


def hard_negatives(candidates: pd.DataFrame, annotations: pd.DataFrame, excluded: pd.DataFrame | None,
                   per_ct: int) -> pd.DataFrame:
    """The ``per_ct`` components of one CT's analysis (``center_x/y/z``, ``p_nodule``) scored
    highest among those on no annotated or excluded finding, as LUNA16 class-0 rows."""
    xyz = candidates[["center_x", "center_y", "center_z"]].to_numpy(np.float64)
    keep = _far_from(annotations, xyz)
    if excluded is not None:
        keep &= _far_from(excluded, xyz)
    chosen = candidates[keep].sort_values("p_nodule", ascending=False, kind="stable").head(per_ct)
    return pd.DataFrame({"seriesuid": chosen["series_uid"].astype(str), "coordX": chosen["center_x"],
                         "coordY": chosen["center_y"], "coordZ": chosen["center_z"], "class": 0})


def mine_hard_negatives(dataset_dir: str | Path, bundles_dir: str | Path, *, parts: Sequence[str] = ("train",),
                        per_ct: int = 48, device: str | None = None) -> Path:
    """Run the bundles' pipeline over the split's ``parts`` and write their hard negatives to
    ``prepared/candidates_mined.csv``; returns its path."""
    from lungmonai.pipeline import analyze_ct, load_models, pipeline_settings

    dataset = Path(dataset_dir)
    prepared = dataset / "prepared"
    split = load_split(prepared / "split.json")
    series = [uid for part in parts for uid in split.series_in(part)]
    paths = find_series(dataset)
    annotations = read_luna_csv(dataset / ANNOTATION_FILE, ANNOTATION_COLUMNS)
    excluded_path = dataset / "annotations_excluded.csv"
    excluded = read_luna_csv(excluded_path, ANNOTATION_COLUMNS) if excluded_path.is_file() else None
    models = load_models(bundles_dir, device=device, with_malignancy=False)
    settings = pipeline_settings(bundles_dir)
    rows = []
    for uid in progress(series, desc="mining hard negatives", unit="CT"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ComponentCapWarning)
            found = analyze_ct(read_ct(paths[uid]), models, settings).candidates
        rows.append(hard_negatives(found, annotations[annotations["seriesuid"] == uid],
                                   None if excluded is None else excluded[excluded["seriesuid"] == uid], per_ct))
    mined = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=CANDIDATE_COLUMNS)
    return atomic_write_csv(prepared / MINED_FILE, mined[CANDIDATE_COLUMNS], index=False)
