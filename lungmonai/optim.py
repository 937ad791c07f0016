"""Optimizer parameter groups and learning-rate schedules selectable from bundle configs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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


def optimizer_from_groups(
    name: str, groups_for: Callable[[bool], list[dict]], lr: float, momentum: float = 0.99
) -> torch.optim.Optimizer:
    """``sgd`` (the LUNA book's: lr 1e-3, momentum 0.99) or ``adamw`` over parameter groups.

    ``groups_for(split_decay)`` builds the groups: for AdamW with biases and norm parameters
    in groups of their own without weight decay (``split_decay=True``), for SGD without.
    """
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups_for(False), lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups_for(True), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: choose 'sgd' or 'adamw'")


def make_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``sgd`` or ``adamw`` (decay off biases and norms) over the model's trainable parameters."""

    def groups(split_decay: bool) -> list[dict]:
        if split_decay:
            return [g for g in decay_param_groups(model, weight_decay) if g["params"]]
        return [{"params": trainable(model.parameters()), "weight_decay": weight_decay}]

    return optimizer_from_groups(name, groups, lr, momentum)


ONECYCLE_MOMENTUM_SPAN = 0.1  # one-cycle's usual 0.95 -> 0.85 dip while the learning rate peaks


def _configured_momentum(optimizer: torch.optim.Optimizer) -> float:
    """SGD's momentum or Adam's beta1, as configured: one-cycle's own 0.85-0.95 would silently
    replace the book's 0.99, so the cycle dips from the configured value and returns to it."""
    group = optimizer.param_groups[0]
    return float(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration schedule: ``constant``, ``warmup_cosine`` (MONAI's) or ``onecycle`` (torch's)."""
    name = name.lower()
    total_steps = max(int(total_steps), 1)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if name == "warmup_cosine":
        from monai.optimizers import WarmupCosineSchedule

        return WarmupCosineSchedule(optimizer, warmup_steps=min(int(warmup_steps), total_steps - 1), t_total=total_steps)
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        momentum = _configured_momentum(optimizer)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps, cycle_momentum=momentum > 0,
            max_momentum=momentum, base_momentum=max(momentum - ONECYCLE_MOMENTUM_SPAN, 0.0),
        )
    raise ValueError(f"unknown schedule {name!r}: choose 'constant', 'warmup_cosine' or 'onecycle'")
