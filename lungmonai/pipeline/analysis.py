"""One CT through segmentation, grouping, nodule classification and malignancy."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from lungmonai.classification.inference import (
    OTHER_FLIPS,
    class1_probability,
    complete_flip_average,
    crop_images,
    predict_logits,
)
from lungmonai.config import contract, flag
from lungmonai.grouping import mask_and_group
from lungmonai.inference.autocast import check_precision
from lungmonai.io.grid import to_grid
from lungmonai.io.orient import to_lps
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.malignancy.size_fusion import apply_fusion
from lungmonai.pipeline.models import PipelineModels
from lungmonai.segmentation import segment_ct


@dataclass(frozen=True)
class PipelineSettings:
    """Thresholds and limits of the analysis (the pipeline bundle's config sets them)."""

    seg_threshold: float = 0.5
    # The book erodes the thresholded mask once, on LUNA16's ~0.7 mm pixels. Eroding a fixed
    # number of voxels removes more tissue the coarser the pixels (at 1.5 mm, one iteration
    # erased most small nodules), so the erosion is set in millimetres and turned into
    # iterations per CT: one at 0.5-1.0 mm pixels, none at 1.4 mm and above.
    erosion_mm: float = 0.7
    # At most this many components per CT go to the classifier, those the segmentation is most
    # sure of (0: all of them, as the book). Classified by the classifier alone, more components
    # cost CPM (on the 49 val CTs of an earlier 120-series development set, 1000 instead of 300:
    # -0.069); weighted by the segmentation (seg_score_power) every component can be classified,
    # and the shipped cap (3000; the val CTs have 800-1800 at threshold 0.1) only guards against a
    # segmentation unsure everywhere (bench/bench_candidate_settings.py).
    max_components: int = 300
    # P(nodule) is the classifier's probability times the segmentation's ``p_seg_max`` to this
    # power (0: the classifier's alone, as the book). A component the segmentation is unsure of
    # keeps its place only where the classifier is sure, so the threshold can go low enough to
    # reach faint and ground-glass nodules without their look-alikes outranking the nodules:
    # see :func:`nodule_score`.
    seg_score_power: float = 1.0
    # Segment only the box around the lungs (lungmonai.segmentation.lung_box); False runs the
    # whole slices, as the book does.
    restrict_to_lungs: bool = True
    # The classifier's top candidates per CT are scored again, averaged over the crop's eight
    # flips (see predict_logits); 0 turns this off. Only the top of the ranking reaches
    # LUNA16's FROC points (at most 8 false positives per scan): on the embedded dataset,
    # re-scoring the top 32 raised CPM by 0.08-0.12, re-scoring all 300 by 0.14 for 4.5x the time.
    flip_tta_top: int = 32
    nodule_threshold: float = 0.5
    malignancy_threshold: float = 0.5
    # bfloat16 forward passes where the hardware runs them natively ("auto"), else float32.
    precision: str = "auto"
    seg_batch_size: int = 16
    crop_batch_size: int = 64
    max_pictures: int = 20

    def __post_init__(self) -> None:
        """Refuse impossible values when the settings are made, not deep inside a CT's analysis."""
        check_precision(self.precision)
        for name in ("seg_threshold", "nodule_threshold", "malignancy_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also refuses NaN
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not 0.0 <= self.seg_score_power < float("inf"):
            raise ValueError(f"seg_score_power must be >= 0, got {self.seg_score_power}")
        if not 0.0 <= self.erosion_mm < float("inf"):
            raise ValueError(f"erosion_mm must be >= 0, got {self.erosion_mm}")
        for name in ("max_components", "flip_tta_top", "max_pictures"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("seg_batch_size", "crop_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        try:  # a bundle override from the command line arrives as the text "false"
            object.__setattr__(self, "restrict_to_lungs", flag(self.restrict_to_lungs))
        except ValueError as error:
            raise ValueError(f"restrict_to_lungs: {error}") from None


@dataclass
class Analysis:
    """Every candidate the segmentation produced, with its probabilities, plus what it cost."""

    ct: CTVolume
    candidates: pd.DataFrame
    mask: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    # Components the grouping found before the cap (``max_components``) kept the best.
    components_found: int = 0
    # The CT's geometry as read, when ``ct`` had to be re-laid out (see lungmonai.io.orient) or
    # resampled (lungmonai.io.grid): the report gives voxel indices in the file the user has.
    source_geometry: Geometry | None = None
    # The CT re-laid out but at its own spacing (shape, geometry), when ``ct`` is on a working
    # grid of another spacing: where the mask goes back to before it is written.
    native_grid: tuple[tuple[int, int, int], Geometry] | None = None

    def nodules(self, settings: PipelineSettings) -> pd.DataFrame:
        """Candidates the classifier calls nodules."""
        return self.candidates[self.candidates["p_nodule"] >= settings.nodule_threshold]


def nodule_score(p_image: np.ndarray, p_seg_max: np.ndarray, power: float) -> np.ndarray:
    """P(nodule) of candidates: the classifier's ``p_image`` times the segmentation's ``p_seg_max``
    to ``power`` (a missing segmentation score counts as 1).

    Why: on the 48 val CTs of the 240-series development set (83 nodules), a segmentation
    threshold of 0.1 instead of 0.5 reaches two faint or ground-glass nodules (max P(seg) 0.20 and
    0.14) that the classifier gives 0.93 and 0.89, but about 1050 components per CT instead of
    650. Classified by the classifier alone, the low-P(seg) look-alikes among them outranked
    nodules: CPM 0.735 against 0.809 for the 300 most certain components at 0.5. Weighted by
    P(seg) they fall back below the nodules the segmentation is sure of: CPM 0.806, paired
    -0.003 (-0.010 to +0.008), and 2 nodules never reached instead of 4
    (``bench/bench_candidate_settings.py --seg_powers``, the pipeline README).
    """
    weight = np.nan_to_num(np.asarray(p_seg_max, dtype=np.float64), nan=1.0) ** float(power)
    return np.asarray(p_image, dtype=np.float64) * weight


def pipeline_settings(bundles_dir: str | os.PathLike[str], **overrides: Any) -> PipelineSettings:
    """The pipeline settings of the bundles' contract (``bundles_dir/contract.json``) with
    ``overrides``: what the pipeline bundle, the segmentation's validation and the command line
    all start from, so that ``--settings#nodule_threshold 0.3`` overrides one of them."""
    return PipelineSettings(**{**contract(bundles_dir)["pipeline"], **overrides})


def analyze_ct(ct: CTVolume, models: PipelineModels, settings: PipelineSettings = PipelineSettings()) -> Analysis:
    """Segment every slice, group voxels into candidates, classify them, then rate malignancy
    of those above the nodule threshold. ``candidates`` keeps all candidates (LUNA16's
    submission format scores every one); P(malignant) is NaN below the nodule threshold.
    ``p_malignant`` is what the pipeline reports: the image model's probability blended with the
    measured diameter where the validation chose that (``models.size_fusion``), else the image
    model's own; ``p_malignant_image`` is always the image model's own, so both can be shown."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    source_geometry = ct.geometry
    native = to_lps(ct)  # axial slices first, as the networks were trained; xyz unchanged
    seg = models.seg_settings
    ct = to_grid(native, seg.get("grid_spacing_xyz"))  # the voxel size the networks were trained on
    seconds["resample"] = time.perf_counter() - start
    start = time.perf_counter()
    prob = segment_ct(ct, models.segmenter, models.device, batch_size=settings.seg_batch_size,
                      context=seg["context"], hu_window=seg["hu_window"], restrict_to_lungs=settings.restrict_to_lungs,
                      precision=settings.precision)
    seconds["segment"] = time.perf_counter() - start

    start = time.perf_counter()
    mask, groups = mask_and_group(prob, ct.hu, ct.geometry, threshold=settings.seg_threshold, erosion_mm=settings.erosion_mm,
                                  max_components=settings.max_components or None, source=str(ct.source))
    seconds["group"] = time.perf_counter() - start

    start = time.perf_counter()
    images = crop_images(ct, groups[["center_x", "center_y", "center_z"]].to_numpy(np.float64), models.crop_transform)
    run = {"device": models.device, "batch_size": settings.crop_batch_size, "precision": settings.precision}
    logits = predict_logits(models.classifier, images, **run)
    p_seg = groups["p_seg_max"].to_numpy(np.float64)
    score = nodule_score(class1_probability(logits), p_seg, settings.seg_score_power)
    top = np.argsort(-score, kind="stable")[: settings.flip_tta_top]
    if len(top):
        others = predict_logits(models.classifier, images[torch.from_numpy(top)], flips=OTHER_FLIPS, **run)
        logits[top] = complete_flip_average(logits[top], others)
    groups["p_nodule_image"] = class1_probability(logits)  # the classifier's own
    groups["p_nodule"] = nodule_score(groups["p_nodule_image"].to_numpy(), p_seg, settings.seg_score_power)
    seconds["classify"] = time.perf_counter() - start

    start = time.perf_counter()
    groups["p_malignant"] = np.nan
    groups["p_malignant_image"] = np.nan
    kept = groups["p_nodule"].to_numpy() >= settings.nodule_threshold
    if models.malignancy is not None and kept.any():
        groups.loc[kept, "p_malignant_image"] = class1_probability(
            predict_logits(models.malignancy, images[torch.from_numpy(kept)], **run))
    # The size the pipeline measured (the grouping's equivalent-sphere diameter) is the one the
    # evaluation's diameter baseline uses, and the one the fusion was fitted on.
    groups["p_malignant"] = apply_fusion(models.size_fusion, groups["p_malignant_image"].to_numpy(),
                                         groups["diameter_mm"].to_numpy(np.float64))
    seconds["malignancy"] = time.perf_counter() - start
    groups.insert(0, "series_uid", ct.series_uid)
    return Analysis(ct=ct, candidates=groups.reset_index(drop=True), mask=mask, seconds=seconds,
                    components_found=groups.attrs["components_found"],
                    source_geometry=None if source_geometry == ct.geometry else source_geometry,
                    native_grid=None if native is ct else (native.shape_irc, native.geometry))
