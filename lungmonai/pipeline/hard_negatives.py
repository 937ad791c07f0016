"""The segmentation's own false positives on the training series, as extra classifier negatives.

LUNA16's ``candidates.csv`` comes from other detectors; the components our segmentation leaves
are a different crowd (mostly vessels seen end-on, which a 2D U-Net marks with certainty).
A classifier that never saw them ranks many of them above real nodules, and LUNA16's FROC
counts every one. Mining them on the training series and adding them to the candidate table
(``prepared/hard_negatives.csv``, read by ``prepare_dataset``) is the usual false-positive
reduction round of a detection system. Only the split's train part is mined, so the
evaluation never sees a classifier tuned to its own scans' false positives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.data.candidates import require_prepared
from lungmonai.grouping import group_segmentation, segmentation_mask
from lungmonai.io import find_series, read_ct
from lungmonai.pipeline.analysis import PipelineSettings, erosion_iterations
from lungmonai.pipeline.models import Segmentation
from lungmonai.progress import progress
from lungmonai.segmentation import segment_ct
from lungmonai.tables.candidates import ANNOTATION_FILE
from lungmonai.tables.prepare import HARD_NEGATIVES_FILE
from lungmonai.tables.splits import load_split

COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "class"]


def far_from_nodules(centers_xyz: np.ndarray, nodules_xyz: np.ndarray, diameters_mm: np.ndarray, margin_mm: float) -> np.ndarray:
    """True for centres farther than radius + ``margin_mm`` from every annotated nodule: a
    component on the edge of a nodule is part of a true finding, not a false positive."""
    if len(nodules_xyz) == 0:
        return np.ones(len(centers_xyz), dtype=bool)
    distance = np.linalg.norm(centers_xyz[:, None, :] - nodules_xyz[None, :, :], axis=2)
    return np.all(distance > np.asarray(diameters_mm)[None, :] / 2.0 + margin_mm, axis=1)


def components_of(ct, segmentation: Segmentation, settings: PipelineSettings, max_components: int) -> pd.DataFrame:
    """The analysis's segmentation and grouping steps alone (no classifier), best-ranked first."""
    prob = segment_ct(ct, segmentation.network, segmentation.device, batch_size=settings.seg_batch_size,
                      context=segmentation.settings["context"], hu_window=segmentation.settings["hu_window"],
                      precision=settings.precision)
    mask = segmentation_mask(prob, threshold=settings.seg_threshold,
                             erosion_iterations=erosion_iterations(ct.geometry.spacing_xyz, settings.erosion_mm))
    return group_segmentation(prob, ct.hu, ct.geometry, mask=mask, max_components=max_components)


def mine_hard_negatives(
    dataset_dir: str | Path,
    segmentation: Segmentation,
    settings: PipelineSettings = PipelineSettings(),
    per_ct: int = 100,
    margin_mm: float = 3.0,
    prepared_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Segment every training series and keep its top ``per_ct`` components (the pipeline's own
    ranking) that lie away from all annotated nodules; writes ``prepared/hard_negatives.csv``
    atomically and returns it. Run ``prepare_dataset`` afterwards to add them to the table
    and the crop cache."""
    if per_ct < 1:
        raise ValueError(f"per_ct must be >= 1, got {per_ct}")
    import warnings

    dataset = Path(dataset_dir)
    prepared = require_prepared(prepared_dir or dataset / "prepared")
    series = load_split(prepared / "split.json").series_in("train")
    paths = find_series(dataset)
    missing = [uid for uid in series if uid not in paths]
    if missing:
        raise FileNotFoundError(f"{dataset}: {len(missing)} train series of the split are not on disk, e.g. {missing[0]}")
    annotations = pd.read_csv(dataset / ANNOTATION_FILE, dtype={"seriesuid": str})
    frames = []
    for uid in progress(series, desc="mining hard negatives", unit="CT"):
        ct = read_ct(paths[uid])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the cap bites by design here
            found = components_of(ct, segmentation, settings, per_ct)
        xyz = found[["center_x", "center_y", "center_z"]].to_numpy(np.float64)
        truth = annotations[annotations["seriesuid"] == uid]
        keep = far_from_nodules(xyz, truth[["coordX", "coordY", "coordZ"]].to_numpy(np.float64),
                                truth["diameter_mm"].to_numpy(np.float64), margin_mm)
        frames.append(pd.DataFrame({"seriesuid": uid, "coordX": xyz[keep, 0], "coordY": xyz[keep, 1],
                                    "coordZ": xyz[keep, 2], "class": 0}))
    mined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    atomic_write_csv(prepared / HARD_NEGATIVES_FILE, mined[COLUMNS], index=False)
    return mined
