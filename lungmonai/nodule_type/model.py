"""The nodule-type model: a multinomial logistic regression on standardised density features,
plus a binary one for calcification, stored as plain JSON.

Why this model: the type (solid / part-solid / ground-glass) and calcification are matters of
density, which a handful of HU statistics measure directly (:mod:`.features`); a linear model
on them has a few dozen numbers, can be read and checked by eye, and fits from the hundred or
so rated nodules a development set holds, where a network would mostly learn its noise.

Why JSON, and where: the model is data (feature names, their means and scales, one row of
coefficients per class, the classes' names), not code, so it is stored as numbers a person can
read and any tool can load, never as a pickle (which runs code when read). It lives at
``<bundles>/nodule_type/configs/model.json``: inside the bundles folder, so the installed
package carries it (the package data already takes every bundle's ``configs/*.json``) and
``--bundles``/``LUNGMONAI_BUNDLES`` choose it along with the networks it goes with; and in
``configs/``, not ``models/``, because the demo's training copy of the bundles keeps configs
and leaves models out, and this file must come along. It is a few kilobytes, written by
``python -m lungmonai.nodule_type.train``, with the record of how it was fitted and its
validation figures under ``training``.

A file is checked when loaded: unknown keys, a missing key, coefficients of the wrong shape,
non-finite numbers, unknown class names and features other than the ones this code measures
are refused with a message naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import expit, log_softmax, softmax

from lungmonai.nodule_type.features import FEATURES, nodule_features

FORMAT = "lungmonai.nodule_type/1"
TYPES: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
"""The Lung-RADS nodule types (:data:`lungmonai.reports.lungrads.NODULE_TYPES`), in this order."""

MODEL_FILE = Path("nodule_type") / "configs" / "model.json"
"""Where the model lives inside a bundles folder."""

_TOP_KEYS = {"format", "description", "features", "feature_mean", "feature_scale", "type", "calcified", "training"}
_REQUIRED = _TOP_KEYS - {"description", "training"}
_TYPE_KEYS = {"classes", "coef", "intercept", "l2", "class_weight_power"}
_CALC_KEYS = {"coef", "intercept", "threshold", "l2", "class_weight_power"}


class ModelFileError(ValueError):
    """A nodule-type model file that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class TypeModel:
    """Standardisation, the type's softmax and calcification's logistic, and how they were fitted."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    classes: tuple[str, ...]
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    calc_coef: np.ndarray  # (features,)
    calc_intercept: float
    calc_threshold: float = 0.5
    l2: float = 0.0
    calc_l2: float = 0.0
    class_weight_power: float = 1.0
    calc_class_weight_power: float = 1.0
    training: dict[str, Any] = field(default_factory=dict)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(x, dtype=np.float64)) - self.mean) / self.scale

    def type_probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, len(classes)) probabilities of each class for feature rows ``x``."""
        return softmax(self.standardise(x) @ self.coef.T + self.intercept, axis=1)

    def calcified_probability(self, x: np.ndarray) -> np.ndarray:
        """(n,) probability that each nodule is calcified."""
        return expit(self.standardise(x) @ self.calc_coef + self.calc_intercept)

    def to_json(self) -> dict[str, Any]:
        r = lambda a: [round(float(v), 6) for v in np.ravel(a)]  # noqa: E731
        return {
            "format": FORMAT,
            "description": ("Nodule type (solid, part-solid, ground-glass) and calcification from density features of the "
                            "nodule's voxels on the working grid (lungmonai.nodule_type): features are standardised "
                            "((x - feature_mean) / feature_scale), then type p = softmax(coef @ z + intercept) over classes, "
                            "calcified p = sigmoid(coef @ z + intercept) >= threshold."),
            "features": list(self.features),
            "feature_mean": r(self.mean),
            "feature_scale": r(self.scale),
            "type": {"classes": list(self.classes), "coef": [r(row) for row in self.coef], "intercept": r(self.intercept),
                     "l2": self.l2, "class_weight_power": self.class_weight_power},
            "calcified": {"coef": r(self.calc_coef), "intercept": round(float(self.calc_intercept), 6),
                          "threshold": self.calc_threshold, "l2": self.calc_l2,
                          "class_weight_power": self.calc_class_weight_power},
            "training": self.training,
        }


# ---------------------------------------------------------------------------------------------
# Fitting


def class_weights(y: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """Per-sample weights ``(n / n_class) ** power`` normalised to mean 1: power 0 weighs every
    nodule alike, 1 gives every class present the same total weight (rare types count)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = (len(y) / np.maximum(counts[y], 1.0)) ** power
    return w / w.mean()


def fit_softmax(z: np.ndarray, y: np.ndarray, n_classes: int, l2: float,
                sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (n_classes, d) and intercepts minimising the weighted mean cross-entropy
    plus ``l2 / 2 * |coef|^2`` (intercepts not penalised), by L-BFGS. ``z``: standardised rows;
    ``y``: class index per row. Deterministic: same data, same numbers."""
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    y = np.asarray(y, dtype=np.int64)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    w = w / w.sum()
    onehot = np.eye(n_classes)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d:]
        logp = log_softmax(z @ coef.T + b, axis=1)
        value = -float(np.sum(w * np.sum(onehot * logp, axis=1))) + 0.5 * l2 * float(np.sum(coef**2))
        resid = (np.exp(logp) - onehot) * w[:, None]  # d loss / d logits
        grad_coef = resid.T @ z + l2 * coef
        return value, np.concatenate([grad_coef.ravel(), resid.sum(axis=0)])

    result = optimize.minimize(loss, np.zeros(n_classes * (d + 1)), jac=True, method="L-BFGS-B",
                               options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-12})
    theta = result.x
    return theta[: n_classes * d].reshape(n_classes, d), theta[n_classes * d:]


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (standard deviation; 1 where a feature does not vary) of the training rows."""
    x = np.asarray(x, dtype=np.float64)
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 1e-9, scale, 1.0)


def fit_model(x: np.ndarray, types: Sequence[str], calcified: Sequence[bool], *, l2: float = 0.1,
              class_weight_power: float = 1.0, calc_l2: float = 0.1, calc_class_weight_power: float = 1.0,
              calc_threshold: float = 0.5, training: Mapping[str, Any] | None = None) -> TypeModel:
    """Fit both outputs on feature rows ``x`` (one per nodule, :data:`FEATURES` order).

    The model knows the types its training data holds (a type without a training nodule is
    never predicted, and gets probability 0); calcification needs nodules of both kinds.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) == 0:
        raise ValueError(f"features must be (n >= 1, {len(FEATURES)}), got {x.shape}")
    if len(types) != len(x) or len(calcified) != len(x):
        raise ValueError(f"{len(x)} feature rows but {len(types)} types and {len(calcified)} calcification labels")
    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise ValueError(f"unknown nodule type(s) {unknown}: expected {list(TYPES)}")
    classes = tuple(t for t in TYPES if t in set(types))
    if len(classes) < 2:
        raise ValueError(f"the training nodules are all {classes[0]}: a type model needs at least two types")
    calc = np.asarray(calcified, dtype=bool)
    if calc.all() or not calc.any():
        raise ValueError("the training nodules are all calcified or none is: calcification needs both kinds")
    mean, scale = standardisation(x)
    z = (x - mean) / scale
    y = np.array([classes.index(t) for t in types])
    coef, intercept = fit_softmax(z, y, len(classes), l2, class_weights(y, len(classes), class_weight_power))
    yc = calc.astype(np.int64)
    c2, b2 = fit_softmax(z, yc, 2, calc_l2, class_weights(yc, 2, calc_class_weight_power))
    # Two-class softmax as a logistic: the logit is the difference of the two rows. Its penalty
    # (l2/2 on both rows) equals l2/4 on the difference, the rows being opposite at the optimum.
    return TypeModel(tuple(FEATURES), mean, scale, classes, coef, intercept, c2[1] - c2[0], float(b2[1] - b2[0]),
                     calc_threshold=float(calc_threshold), l2=float(l2), calc_l2=float(calc_l2),
                     class_weight_power=float(class_weight_power), calc_class_weight_power=float(calc_class_weight_power),
                     training=dict(training or {}))


# ---------------------------------------------------------------------------------------------
# File


def save_model(model: TypeModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` as JSON (atomically); it is checked by loading it back first."""
    from lungmonai.cache.atomic import atomic_write_json

    data = model.to_json()
    model_from_json(json.loads(json.dumps(data)), str(path))  # never write a file load_model would refuse
    return atomic_write_json(path, data, indent=1)


def _numbers(value: Any, shape: tuple[int, ...], what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelFileError(f"{where}: {what} must be numbers with shape {shape}, got {str(value)[:80]}") from None
    if array.shape != shape:
        raise ModelFileError(f"{where}: {what} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise ModelFileError(f"{where}: {what} holds a non-finite number")
    return array


def _keys(block: Any, allowed: set[str], required: set[str], what: str, where: str) -> None:
    if not isinstance(block, dict):
        raise ModelFileError(f"{where}: {what} must be an object, got {type(block).__name__}")
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ModelFileError(f"{where}: unknown key(s) {unknown} in {what}; expected only {sorted(allowed)}")
    missing = sorted(required - set(block))
    if missing:
        raise ModelFileError(f"{where}: {what} lacks key(s) {missing}")


def _scalar(block: Mapping[str, Any], key: str, what: str, where: str, default: float, low: float, high: float) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ModelFileError(f"{where}: {what}.{key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def model_from_json(data: Any, where: str = "model") -> TypeModel:
    """A :class:`TypeModel` from parsed JSON, after checking every key and shape."""
    _keys(data, _TOP_KEYS, _REQUIRED, "the model", where)
    if data["format"] != FORMAT:
        raise ModelFileError(f"{where}: format {data['format']!r} is not {FORMAT!r}")
    features = data["features"]
    if features != list(FEATURES):
        raise ModelFileError(f"{where}: fitted on features {features}, but this code measures {list(FEATURES)}; "
                             "fit the model again (python -m lungmonai.nodule_type.train)")
    d = len(FEATURES)
    mean = _numbers(data["feature_mean"], (d,), "feature_mean", where)
    scale = _numbers(data["feature_scale"], (d,), "feature_scale", where)
    if not np.all(scale > 0):
        raise ModelFileError(f"{where}: feature_scale must be positive")
    block = data["type"]
    _keys(block, _TYPE_KEYS, {"classes", "coef", "intercept"}, "type", where)
    classes = block["classes"]
    if (not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes)
            or not set(classes) <= set(TYPES)):
        raise ModelFileError(f"{where}: type.classes must be two or three distinct names of {list(TYPES)}, got {classes!r}")
    k = len(classes)
    coef = _numbers(block["coef"], (k, d), "type.coef", where)
    intercept = _numbers(block["intercept"], (k,), "type.intercept", where)
    calc = data["calcified"]
    _keys(calc, _CALC_KEYS, {"coef", "intercept"}, "calcified", where)
    calc_coef = _numbers(calc["coef"], (d,), "calcified.coef", where)
    calc_intercept = float(_numbers(calc["intercept"], (), "calcified.intercept", where))
    training = data.get("training", {})
    if not isinstance(training, dict):
        raise ModelFileError(f"{where}: training must be an object, got {type(training).__name__}")
    return TypeModel(
        tuple(features), mean, scale, tuple(classes), coef, intercept, calc_coef, calc_intercept,
        calc_threshold=_scalar(calc, "threshold", "calcified", where, 0.5, 0.0, 1.0),
        l2=_scalar(block, "l2", "type", where, 0.0, 0.0, math.inf),
        calc_l2=_scalar(calc, "l2", "calcified", where, 0.0, 0.0, math.inf),
        class_weight_power=_scalar(block, "class_weight_power", "type", where, 1.0, 0.0, 1.0),
        calc_class_weight_power=_scalar(calc, "class_weight_power", "calcified", where, 1.0, 0.0, 1.0),
        training=training,
    )


def load_model(path: str | os.PathLike[str]) -> TypeModel:
    """Read and check a model file; :class:`ModelFileError` (a ``ValueError``) says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no nodule-type model there (python -m lungmonai.nodule_type.train writes one)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None
    return model_from_json(data, str(path))


def default_model_path(bundles_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<bundles>/nodule_type/configs/model.json`` of the bundles in use
    (``bundles_dir``, else ``LUNGMONAI_BUNDLES``, else the installed ones)."""
    from lungmonai.config import find_bundles

    return find_bundles(bundles_dir) / MODEL_FILE


def load_default_model(bundles_dir: str | os.PathLike[str] | None = None) -> TypeModel:
    """The model shipped with the bundles in use (:func:`default_model_path`)."""
    return load_model(default_model_path(bundles_dir))


# ---------------------------------------------------------------------------------------------
# Prediction


def predict_features(features: np.ndarray, model: TypeModel) -> dict[str, Any]:
    """:func:`predict_type`'s answer for one row of :data:`FEATURES`."""
    p = model.type_probabilities(features)[0]
    p_calc = float(model.calcified_probability(features)[0])
    probs = {t: 0.0 for t in TYPES}
    probs.update({c: round(float(v), 4) for c, v in zip(model.classes, p)})
    return {
        "type": model.classes[int(np.argmax(p))],
        "p": probs,
        "calcified": bool(p_calc >= model.calc_threshold),
        "p_calcified": round(p_calc, 4),
    }


def predict_type(hu: np.ndarray, component_mask: np.ndarray, spacing_irc: Sequence[float],
                 model: TypeModel | str | os.PathLike[str]) -> dict[str, Any]:
    """One nodule's type and calcification from its voxels on the working grid.

    ``hu``: HU array on the working grid (a crop or the whole CT); ``component_mask``: bool,
    same shape, True on the nodule's segmentation component (with the layer the erosion took,
    as the report measures sizes); ``spacing_irc``: voxel size in mm; ``model``: a
    :class:`TypeModel` or the path of its JSON.

    Returns ``{"type": "solid" | "part-solid" | "ground-glass", "p": {type: probability} (all
    three; 0 for a type the model never learnt), "calcified": bool, "p_calcified": float}``.
    """
    if not isinstance(model, TypeModel):
        model = load_model(model)
    return predict_features(nodule_features(hu, component_mask, spacing_irc), model)
