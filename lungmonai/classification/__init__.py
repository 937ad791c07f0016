"""Nodule classification (LUNA step 4): the book's 3D crop classifier, its crops, data lists, sampler and scoring."""

from lungmonai.classification.data import candidate_items
from lungmonai.classification.inference import (
    FLIP_DIMS,
    class1_probability,
    crop_images,
    load_network,
    predict_logits,
    read_centers,
    score_candidates_file,
)
from lungmonai.classification.network import LunaBlock, LunaModel
from lungmonai.classification.preprocessing import cached_crop_transform, crop_augmentation, ct_crop_transform
from lungmonai.classification.sampling import BalancedSampler, balanced_indices
from lungmonai.classification.transforms import CropCandidated, LoadCandidateCropd

__all__ = [
    "FLIP_DIMS",
    "BalancedSampler",
    "CropCandidated",
    "LoadCandidateCropd",
    "LunaBlock",
    "LunaModel",
    "balanced_indices",
    "cached_crop_transform",
    "candidate_items",
    "class1_probability",
    "crop_augmentation",
    "crop_images",
    "ct_crop_transform",
    "load_network",
    "predict_logits",
    "read_centers",
    "score_candidates_file",
]
