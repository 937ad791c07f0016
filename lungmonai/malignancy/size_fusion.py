"""P(malignant) that knows the nodule's size: the image model's output blended with the diameter
the pipeline measured, chosen on the validation nodules.

Size is most of the malignancy signal in LIDC (a size-driven model scores AUC ~0.90), and a crop
network sees size only through a fixed 32x48x48 window, so an image model can trail the plain
diameter it would need to beat. The blend

    P = sigmoid(w0 + w1 * logit(p_image) + w2 * log(diameter_mm))

gives the diameter to the model explicitly, on the scale where it acts (malignancy odds grow
with the log of size), and recalibrates the image logit at the same time. Three weights fitted
by L2-regularised logistic regression are all the validation nodules (about a hundred) can
support; anything richer would be chosen on noise.

:func:`choose_fusion` decides on the validation nodules whether the blend is worth using, from
cross-validated predictions (the blend is fitted on the same nodules it is judged on, so its
in-sample AUC would flatter it); :func:`apply_fusion` is what the pipeline runs; the choice,
its weights and its figures live in the malignancy bundle's ``configs/size_fusion.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_json, jsonable
from lungmonai.malignancy.baseline import paired_bootstrap_auc_difference
from lungmonai.metrics.baseline import bootstrap_auc_ci
from lungmonai.metrics.classification import roc_auc

logger = logging.getLogger(__name__)

FUSION_FILE = Path("nodule_malignancy/configs/size_fusion.json")
"""Where the choice lives, relative to the bundles folder."""

PROB_CLIP = 1e-6
"""p_image is clipped to [PROB_CLIP, 1 - PROB_CLIP] before the logit: a saturated network
(untrained ones give 0.99997 everywhere, confident ones exactly 0 or 1 in float32) would
otherwise give an infinite feature."""

FORMULA = "P = sigmoid(intercept + logit_p_image * logit(p_image) + log_diameter_mm * log(diameter_mm))"
RULE = "use the blend when its cross-validated AUC on the validation nodules exceeds the image model's"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), PROB_CLIP, 1.0 - PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


def _has_size(diameter_mm: np.ndarray) -> np.ndarray:
    """Where a diameter is usable: finite and positive (log of it is defined)."""
    d = np.asarray(diameter_mm, dtype=np.float64)
    return np.isfinite(d) & (d > 0)


def _features(p_image: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """[logit(p_image), log(diameter_mm)] per nodule (NaN where either is missing)."""
    d = np.asarray(diameter_mm, dtype=np.float64)
    log_d = np.where(_has_size(d), np.log(np.where(_has_size(d), d, 1.0)), np.nan)
    return np.column_stack([_logit(p_image), log_d])


def fit_blend(p_image: np.ndarray, diameter_mm: np.ndarray, malignant: np.ndarray, *, l2: float = 1.0,
              max_iter: int = 100, tol: float = 1e-10) -> dict[str, float]:
    """Weights of the blend by L2-regularised logistic regression (Newton's method).

    The two features are standardised for the fit, so ``l2`` pulls both slopes towards 0 alike
    whatever their units (a logit spans tens, a log diameter about 2); the intercept is not
    pulled. The penalty also keeps the weights finite when the nodules are separable, which at
    validation size happens. Nodules without a usable probability or diameter are left out.
    """
    x = _features(p_image, diameter_mm)
    y = np.asarray(malignant).astype(np.float64).ravel()
    keep = np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    if y.size == 0 or y.min() == y.max():
        raise ValueError(f"the blend needs malignant and benign nodules with a diameter; got {int(y.sum())} of {y.size}")
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    design = np.column_stack([np.ones(len(y)), (x - mean) / std])
    penalty = np.diag([0.0, l2, l2])
    w = np.zeros(3)
    w[0] = np.log(y.mean() / (1.0 - y.mean()))  # start at the base rate
    for _ in range(max_iter):
        p = _sigmoid(design @ w)
        gradient = design.T @ (p - y) + penalty @ w
        hessian = design.T @ (design * (p * (1.0 - p))[:, None]) + penalty + 1e-12 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        w = w - step
        if float(np.abs(step).max()) < tol:
            break
    slopes = w[1:] / std
    return {"intercept": float(w[0] - slopes @ mean), "logit_p_image": float(slopes[0]), "log_diameter_mm": float(slopes[1])}


def blend_probability(weights: dict[str, float], p_image: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """The blend's P(malignant); the image probability itself where the diameter is missing
    (a nodule the pipeline could not measure keeps the model's own answer rather than none)."""
    p = np.asarray(p_image, dtype=np.float64)
    x = _features(p, diameter_mm)
    z = weights["intercept"] + weights["logit_p_image"] * x[:, 0] + weights["log_diameter_mm"] * x[:, 1]
    return np.where(_has_size(diameter_mm), _sigmoid(z), p)


def stratified_folds(malignant: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each nodule: each class dealt round-robin after a seeded shuffle, so every
    fold holds its share of the (few) malignant nodules and the split is the same every run."""
    y = np.asarray(malignant).astype(bool).ravel()
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=int)
    for cls in (False, True):
        members = rng.permutation(np.flatnonzero(y == cls))
        fold[members] = np.arange(members.size) % folds
    return fold


def _interval(score: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    return {"auc": roc_auc(score, y), "ci95": list(bootstrap_auc_ci(score, y, n_boot=n_boot, seed=seed))}


def _difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    point, low, high, p_not_better = paired_bootstrap_auc_difference(a, b, y, n_boot=n_boot, seed=seed)
    return {"difference": point, "ci95": [low, high], "p_not_better": p_not_better}


def choose_fusion(p_image: np.ndarray, diameter_mm: np.ndarray, malignant: np.ndarray, folds: int = 5, seed: int = 0,
                  n_boot: int = 1000, l2: float = 1.0) -> dict[str, Any]:
    """Compare image only, diameter only and the blend on the validation nodules; choose.

    Each variant is scored by its out-of-fold predictions over ``folds`` stratified folds: the
    image probability and the diameter are used as they are (neither is fitted), the blend is
    fitted on the other folds for each fold. AUCs get percentile bootstrap intervals and the
    blend's paired differences against the image model and against diameter get theirs, all
    over the same nodules, ``n_boot`` resamples.

    Rule: use the blend when its cross-validated AUC exceeds the image model's. The blend is
    what the pipeline would otherwise add for nothing, so it has to earn its place against the
    image model, the thing it replaces; whether it also beats diameter is reported, not required.
    The weights returned are refitted on all the nodules, the best estimate of what was judged.
    Missing diameters count as 0 mm in the diameter-only score (least suspicious) and fall back
    to the image probability in the blend, as :func:`apply_fusion` does.
    """
    p = np.asarray(p_image, dtype=np.float64).ravel()
    d = np.asarray(diameter_mm, dtype=np.float64).ravel()
    y = np.asarray(malignant).astype(bool).ravel()
    if not (p.size == d.size == y.size):
        raise ValueError(f"p_image, diameter_mm and malignant differ in length: {p.size}, {d.size}, {y.size}")
    if not np.isfinite(p).all():
        raise ValueError("p_image holds NaN: score every nodule with the image model first")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    k = min(int(folds), n_pos, n_neg)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 malignant and 2 benign nodules; got {n_pos} and {n_neg}")
    fold = stratified_folds(y, k, seed)
    blend = np.empty_like(p)
    for f in range(k):
        test = fold == f
        weights = fit_blend(p[~test], d[~test], y[~test], l2=l2)
        blend[test] = blend_probability(weights, p[test], d[test])
    size = np.where(_has_size(d), d, 0.0)
    cv = {"image": _interval(p, y, n_boot, seed), "diameter": _interval(size, y, n_boot, seed),
          "blend": _interval(blend, y, n_boot, seed)}
    use = bool(cv["blend"]["auc"] > cv["image"]["auc"])
    return jsonable({
        "formula": FORMULA,
        "weights": fit_blend(p, d, y, l2=l2),
        "use": use,
        "rule": RULE,
        "nodules": int(y.size),
        "malignant": n_pos,
        "missing_diameter": int((~_has_size(d)).sum()),
        "cv_auc": cv,
        "blend_minus_image": _difference(blend, p, y, n_boot, seed),
        "blend_minus_diameter": _difference(blend, size, y, n_boot, seed),
        "image_minus_diameter": _difference(p, size, y, n_boot, seed),
        "folds": k,
        "seed": int(seed),
        "bootstrap_resamples": int(n_boot),
        "l2": float(l2),
    })


def apply_fusion(fusion: dict[str, Any] | None, p_image: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """P(malignant) as the pipeline reports it: the blend where the validation chose it, else the
    image probability unchanged. NaN probabilities (candidates the image model did not score)
    stay NaN."""
    p = np.asarray(p_image, dtype=np.float64)
    if not fusion or not fusion.get("use"):
        return p.copy()
    return blend_probability(fusion["weights"], p, np.asarray(diameter_mm, dtype=np.float64))


def found_by_detections(dataset_dir: str | os.PathLike[str], detections_csv: str | os.PathLike[str],
                        nodule_threshold: float) -> pd.DataFrame:
    """The annotated nodules an evaluation's reported findings hit at ``nodule_threshold``, each
    with the image model's own P(malignant) (``p_malignant``; NaN where the analysis did not rate
    it), the measured diameter of its most likely finding and ``mal_bool``: what a user of the
    pipeline gets, and what the validation's malignancy choices are made on.

    ``detections_csv``: what :func:`lungmonai.pipeline.evaluation.evaluate_split` wrote. The image
    model's raw probability (``p_malignant_image``, when the analysis already applied a fusion) is
    taken, never an earlier blend. ``attrs["series"]``: how many series the detections cover.
    """
    from lungmonai.metrics.baseline import found_nodules
    from lungmonai.pipeline.evaluation import truth_table

    detections = pd.read_csv(detections_csv, dtype={"seriesuid": str})
    if "p_malignant_image" in detections:
        detections = detections.assign(p_malignant=detections["p_malignant_image"])
    truth = truth_table(Path(dataset_dir))
    truth = truth[truth["seriesuid"].isin(set(detections["seriesuid"]))]
    found = found_nodules(truth, detections, nodule_threshold)
    found.attrs["series"] = int(detections["seriesuid"].nunique())
    return found


def fit_from_detections(dataset_dir: str | os.PathLike[str], detections_csv: str | os.PathLike[str],
                        nodule_threshold: float, **choose: Any) -> dict[str, Any]:
    """:func:`choose_fusion` on the nodules an evaluation's reported findings hit
    (:func:`found_by_detections`), with the P(malignant) and measured diameter of each one's most
    likely finding, exactly as the evaluation's diameter baseline takes them. Found nodules
    without a P(malignant) (below the threshold the analysis scored malignancy at) are left out
    and counted in ``unscored``.
    """
    found = found_by_detections(dataset_dir, detections_csv, nodule_threshold)
    scored = found[found["p_malignant"].notna()]
    result = choose_fusion(scored["p_malignant"].to_numpy(), scored["measured_diameter_mm"].to_numpy(),
                           scored["mal_bool"].to_numpy(bool), **choose)
    return {**result, "nodule_threshold": float(nodule_threshold), "series": found.attrs["series"],
            "unscored": int(len(found) - len(scored))}


MODEL_FILE = Path("nodule_malignancy/models/model.pt")
"""The image model a fusion is fitted to, relative to the bundles folder."""


def _model_sha256(bundles_dir: Path) -> str | None:
    from lungmonai.recipe_record import sha256

    model = bundles_dir / MODEL_FILE
    return sha256(model) if model.is_file() else None


def write_fusion(bundles_dir: str | os.PathLike[str], fusion: dict[str, Any]) -> Path:
    """Write the choice to the malignancy bundle (atomically: a pipeline loading it meanwhile
    reads the old choice or the new one, never half of one), with the sha256 of the bundle's
    malignancy weights it was fitted to (``model_sha256``): its weights recalibrate that model's
    logit, and mean nothing for another."""
    bundles = Path(bundles_dir)
    return atomic_write_json(bundles / FUSION_FILE, jsonable({**fusion, "model_sha256": _model_sha256(bundles)}))


def load_fusion(bundles_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The bundles' fusion, or None when none was chosen (no file): P(malignant) is then the
    image model's alone.

    A fusion fitted to other malignancy weights than the bundle's (its ``model_sha256`` differs:
    the model was retrained with ``monai.bundle run training`` after the recipe chose the blend)
    is not applied, and a warning names it: its slope on the old model's logit would rescale the
    new model's arbitrarily. A file without ``model_sha256`` is applied as it is."""
    bundles = Path(bundles_dir)
    path = bundles / FUSION_FILE
    if not path.is_file():
        return None
    fusion = json.loads(path.read_text())
    weights = fusion.get("weights") if isinstance(fusion, dict) else None
    missing = [] if isinstance(weights, dict) else ["weights"]
    if not missing:
        missing = [k for k in ("intercept", "logit_p_image", "log_diameter_mm") if not isinstance(weights.get(k), (int, float))]
    if missing or not isinstance(fusion.get("use"), bool):
        raise ValueError(f"{path}: not a size fusion (needs \"use\" true/false and numeric weights; missing or bad: "
                         f"{', '.join(missing) or 'use'})")
    fitted_to = fusion.get("model_sha256")
    if fitted_to is not None and fitted_to != _model_sha256(bundles):
        logger.warning("%s: fitted to other malignancy weights than %s (sha256 %s...); not applied, P(malignant) is "
                       "the image model's alone", path, bundles / MODEL_FILE, str(fitted_to)[:12])
        return None
    return fusion
