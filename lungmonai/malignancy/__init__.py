"""Malignancy estimation for detected nodules: fine-tuning the nodule classifier (book ch. 14),
soft labels from radiologists' ratings, mixup, the diameter baseline, checkpoint ensembles."""

from lungmonai.malignancy.baseline import DiameterBaseline, paired_bootstrap_auc_difference
from lungmonai.malignancy.ensemble import ProbabilityEnsemble, ensemble_from_checkpoints
from lungmonai.malignancy.finetune import GradualUnfreezing, make_finetune_optimizer, prepare_network
from lungmonai.malignancy.labels import attach_targets, nodule_items, soft_target
from lungmonai.malignancy.losses import SoftTargetCrossEntropy
from lungmonai.malignancy.mixup import MixupPrepareBatch, mixup_batch

__all__ = [
    "DiameterBaseline",
    "GradualUnfreezing",
    "MixupPrepareBatch",
    "ProbabilityEnsemble",
    "SoftTargetCrossEntropy",
    "attach_targets",
    "ensemble_from_checkpoints",
    "make_finetune_optimizer",
    "mixup_batch",
    "nodule_items",
    "paired_bootstrap_auc_difference",
    "prepare_network",
    "soft_target",
]
