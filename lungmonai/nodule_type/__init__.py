"""Nodule type for Lung-RADS (solid, part-solid, ground-glass) and calcification, from density.

A small model of its own: density features of the nodule's voxels on the working grid
(:mod:`.features`), a multinomial logistic regression for the type and a logistic one for
calcification, stored as JSON (:mod:`.model`), fitted on the LIDC readers' ratings of a
generated dataset's TRAIN nodules and checked on VAL (:mod:`.train`).

The report calls :func:`predict_type` with :func:`load_default_model`'s model.
"""

from lungmonai.nodule_type.features import FEATURES, nodule_features
from lungmonai.nodule_type.model import (
    TYPES,
    ModelFileError,
    TypeModel,
    default_model_path,
    fit_model,
    load_default_model,
    load_model,
    predict_type,
    save_model,
)

__all__ = [
    "FEATURES",
    "TYPES",
    "ModelFileError",
    "TypeModel",
    "default_model_path",
    "fit_model",
    "load_default_model",
    "load_model",
    "nodule_features",
    "predict_type",
    "save_model",
]
