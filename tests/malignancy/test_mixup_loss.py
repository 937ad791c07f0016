"""Mixup batches and the soft-target loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungmonai.malignancy.losses import SoftTargetCrossEntropy
from lungmonai.malignancy.mixup import MixupPrepareBatch, mixup_batch


def test_mixup_blends_images_and_targets_with_the_same_weights() -> None:
    images = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1, 1).expand(4, 1, 2, 2, 2).clone()
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0])
    mixed, mixed_t, lam, perm = mixup_batch(images, targets, alpha=0.4, rng=np.random.default_rng(3))
    assert mixed.shape == images.shape and mixed_t.shape == targets.shape
    assert 0.5 <= lam <= 1.0
    expected = lam * images + (1 - lam) * images[perm]
    assert torch.allclose(mixed, expected)
    assert torch.allclose(mixed_t, lam * targets + (1 - lam) * targets[perm])
    assert ((mixed_t >= 0.5) == (targets >= 0.5)).all()  # own sample stays dominant


def test_prepare_batch_mixes_only_when_enabled() -> None:
    batch = {"image": torch.randn(6, 1, 4, 4, 4), "label": torch.tensor([0, 1, 0, 1, 0, 1.0])}
    images, targets = MixupPrepareBatch(alpha=0.0)(batch, "cpu")
    assert torch.equal(images, batch["image"]) and torch.equal(targets, batch["label"])
    images, targets = MixupPrepareBatch(alpha=1.0, prob=1.0, seed=0)(batch, "cpu")
    assert images.shape == batch["image"].shape and not torch.equal(images, batch["image"])
    assert targets.dtype == torch.float32 and ((targets > 0) & (targets < 1)).any()


def test_soft_cross_entropy_equals_torch_on_hard_targets_and_smooths() -> None:
    logits = torch.randn(8, 2)
    hard = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    assert SoftTargetCrossEntropy()(logits, hard.float()) == pytest.approx(torch.nn.CrossEntropyLoss()(logits, hard).item(), rel=1e-6)
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.2)(logits, hard).item()
    assert SoftTargetCrossEntropy(0.2)(logits, hard.float()) == pytest.approx(smoothed, rel=1e-6)
    soft = torch.full((8,), 0.5)
    assert SoftTargetCrossEntropy()(torch.zeros(8, 2), soft) == pytest.approx(np.log(2))
