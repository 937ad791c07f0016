"""Dice plus a recall-weighted Dice: the LUNA book's segmentation loss, from MONAI parts.

The segmenter feeds a classifier that removes false positives later, so a missed nodule
costs far more than a marked vessel. The book adds ``Dice(prediction * label, label)``, which
only sees the voxels that should be marked (a soft recall), weighted 8 against plain Dice
(the bundle trains with 2, see its README: 8 marked ~5 % of all voxels for no more nodules).
Both terms are MONAI ``DiceLoss`` with smoothing 1, as the book's ``diceLoss``. The recall
term is per sample (each nodule window must be covered). The plain term is per sample in the
book; with ``batch_dice`` it is over the whole batch instead, because this bundle also trains
on windows without nodules: per sample such a window costs ``1 - 1 / (sum(pred) + 1)``, which
saturates after a few marked voxels and stops pushing false marks down, whereas over the batch
every false mark keeps lowering the batch's Dice.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn


class DiceRecallLoss(nn.Module):
    """``Dice(p, y) + recall_weight * Dice(p * y, y)`` with ``p = sigmoid(logits)``."""

    def __init__(self, recall_weight: float = 8.0, smooth: float = 1.0, batch_dice: bool = True) -> None:
        super().__init__()
        self.recall_weight = float(recall_weight)
        self.dice = DiceLoss(sigmoid=False, smooth_nr=smooth, smooth_dr=smooth, batch=batch_dice, reduction="mean")
        self.recall = DiceLoss(sigmoid=False, smooth_nr=smooth, smooth_dr=smooth, batch=False, reduction="mean")

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        prob = torch.sigmoid(logits.float())
        label = label.float()
        loss = self.dice(prob, label)
        if self.recall_weight:
            loss = loss + self.recall_weight * self.recall(prob * label, label)
        return loss
