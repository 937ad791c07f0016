"""Malignancy estimation for detected nodules: fine-tuning the nodule classifier (book ch. 14),
soft labels from radiologists' ratings, mixup, the diameter baseline, checkpoint ensembles, and
the blend with the measured diameter chosen on validation (size fusion)."""

from lungmonai.malignancy.baseline import DiameterBaseline, paired_bootstrap_auc_difference
from lungmonai.malignancy.ensemble import ProbabilityEnsemble, ensemble_from_checkpoints
from lungmonai.malignancy.finetune import GradualUnfreezing, make_finetune_optimizer, prepare_network
from lungmonai.malignancy.labels import attach_targets, nodule_items, soft_target
from lungmonai.malignancy.losses import SoftTargetCrossEntropy
from lungmonai.malignancy.mixup import MixupPrepareBatch, mixup_batch
from lungmonai.malignancy.size_fusion import apply_fusion, choose_fusion, fit_from_detections, load_fusion, write_fusion

__all__ = [
    "DiameterBaseline",
    "GradualUnfreezing",
    "MixupPrepareBatch",
    "ProbabilityEnsemble",
    "SoftTargetCrossEntropy",
    "apply_fusion",
    "attach_targets",
    "choose_fusion",
    "ensemble_from_checkpoints",
    "fit_from_detections",
    "load_fusion",
    "make_finetune_optimizer",
    "mixup_batch",
    "nodule_items",
    "paired_bootstrap_auc_difference",
    "prepare_network",
    "soft_target",
    "write_fusion",
]
