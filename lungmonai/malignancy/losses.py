"""Cross-entropy against a float P(malignant) target, with optional label smoothing.

The malignancy targets may be soft (share of reads rating >= 4) or mixed (mixup), so the loss
takes a probability per sample rather than a class index; with 0/1 targets and no smoothing it
equals ``nn.CrossEntropyLoss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def smooth(target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Pull a binary target towards 1/2: ``t * (1 - eps) + eps / 2`` (torch's two-class smoothing)."""
    return target * (1.0 - label_smoothing) + 0.5 * label_smoothing


class SoftTargetCrossEntropy(nn.Module):
    """Mean of ``-(1 - t) log p0 - t log p1`` over the batch, ``t`` optionally smoothed.

    Smoothing stops the network from driving confident nodules to logits of +-20, which on a
    few hundred training nodules is mostly memorisation.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = smooth(target.to(logits.dtype).reshape(-1), self.label_smoothing)
        log_p = F.log_softmax(logits.reshape(len(t), 2), dim=1)
        return -((1.0 - t) * log_p[:, 0] + t * log_p[:, 1]).mean()
