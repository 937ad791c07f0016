"""Mixup (Zhang et al. 2018) for the malignancy trainer: convex blends of crops and of targets.

With a few hundred training nodules the network can memorise every crop; training on blends
``lam * x_i + (1 - lam) * x_j`` with targets blended alike asks for predictions that vary
smoothly between nodules, a regulariser that costs nothing at inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.engines.utils import default_prepare_batch


def mixup_batch(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Blend each sample with a random partner: ``lam ~ Beta(alpha, alpha)`` per batch.

    Returns the mixed images and targets (same shapes as given), ``lam`` and the partner indices.
    ``lam`` is folded to >= 0.5 so each blend keeps its own sample dominant (its hard label, used
    by the training metrics, stays meaningful).
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.as_tensor(rng.permutation(len(images)), device=images.device)
    mixed = lam * images + (1.0 - lam) * images[perm]
    t = targets.to(torch.float32)
    return mixed, lam * t + (1.0 - lam) * t[perm], lam, perm


class MixupPrepareBatch:
    """A ``prepare_batch`` for MONAI's SupervisedTrainer: the default one, then mixup with
    probability ``prob`` per batch. ``prob == 0`` (or ``alpha <= 0``) leaves batches untouched."""

    def __init__(self, alpha: float = 0.4, prob: float = 1.0, seed: int = 0) -> None:
        self.alpha = float(alpha)
        self.prob = float(prob)
        self.rng = np.random.default_rng(seed)

    def __call__(
        self, batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        if self.alpha <= 0 or self.prob <= 0 or self.rng.random() >= self.prob:
            return images, targets
        mixed, mixed_targets, _, _ = mixup_batch(images, targets, self.alpha, self.rng)
        return mixed, mixed_targets
