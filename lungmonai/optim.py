"""Optimizer parameter groups and learning-rate schedules selectable from bundle configs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights that get ``weight_decay``, and biases and norm parameters that get none.

    Decaying a bias or a BatchNorm scale only pulls it towards an arbitrary value, so AdamW
    users keep them out of decay.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, _NORM_TYPES) or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def trainable(parameters: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """Only parameters that require gradients, so frozen ones never enter an optimizer."""
    return [p for p in parameters if p.requires_grad]
