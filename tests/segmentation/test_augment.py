"""Batched window augmentation: what the U-Net trains on must stay a faithful, aligned view."""

from __future__ import annotations

import pytest
import torch

from lungmonai.segmentation.augment import AugmentingPrepareBatch, WindowAugmentation


def _blobs(batch: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels with an off-centre disc and an asymmetric bar (so flips and turns show), and an
    image whose every channel is that label scaled to +-1."""
    r, c = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    label = (((r - 11) ** 2 + (c - 19) ** 2) <= 25) | ((r > 22) & (r < 26) & (c > 4) & (c < 20))
    labels = label.float()[None, None].repeat(batch, 1, 1, 1)
    return labels.repeat(1, 3, 1, 1) * 2.0 - 1.0, labels


def test_without_spatial_changes_the_window_passes_unchanged() -> None:
    images, labels = _blobs()
    aug = WindowAugmentation(crop=32, flip=False, rotate=False, scale_range=0.0)
    out_images, out_labels = aug(images, labels)
    assert torch.allclose(out_images, images, atol=1e-5) and torch.equal(out_labels, labels)


def test_flips_give_the_four_mirror_images_exactly() -> None:
    images, labels = _blobs(batch=64)
    out_images, out_labels = WindowAugmentation(crop=32, flip=True, rotate=False, seed=3)(images, labels)
    mirrors = [labels[0], labels[0].flip(1), labels[0].flip(2), labels[0].flip(1, 2)]
    seen = set()
    for image, label in zip(out_images, out_labels):
        (k,) = [i for i, m in enumerate(mirrors) if torch.equal(label, m)]
        seen.add(k)
        assert torch.allclose(image, mirrors[k].repeat(3, 1, 1) * 2.0 - 1.0, atol=1e-5)
    assert seen == {0, 1, 2, 3}


def test_image_and_label_stay_aligned_under_rotation_scale_flip_and_crop() -> None:
    images, labels = _blobs(batch=32, size=48)
    aug = WindowAugmentation(crop=32, flip=True, rotate=True, scale_range=0.2, seed=1)
    out_images, out_labels = aug(images, labels)
    assert out_images.shape == (32, 3, 32, 32) and out_labels.shape == (32, 1, 32, 32)
    assert set(out_labels.unique().tolist()) <= {0.0, 1.0}  # nearest: labels stay labels
    agree = ((out_images[:, :1] > 0).float() == out_labels).float().mean()
    assert agree > 0.97  # only edge pixels may differ between bilinear and nearest
    assert not torch.equal(out_labels[0], out_labels[1])  # every sample gets its own draw


def test_crops_move_around_the_window() -> None:
    images, labels = _blobs(batch=64, size=48)
    out = WindowAugmentation(crop=24, flip=False, rotate=False, seed=0)(images, labels)[1]
    # A fixed disc seen through a moving 24x24 crop covers different amounts of each crop.
    assert len(set(out.sum(dim=(1, 2, 3)).tolist())) > 10


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    images, labels = _blobs(size=48)
    settings = dict(crop=32, flip=True, rotate=True, scale_range=0.2, noise_std=0.1)
    a = WindowAugmentation(**settings, seed=5)(images, labels)
    b = WindowAugmentation(**settings, seed=5)(images, labels)
    c = WindowAugmentation(**settings, seed=6)(images, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_noise_has_the_asked_standard_deviation() -> None:
    images = torch.zeros(16, 7, 64, 64)
    labels = torch.zeros(16, 1, 64, 64)
    out, _ = WindowAugmentation(crop=64, flip=False, rotate=False, noise_std=0.025)(images, labels)
    assert out.std().item() == pytest.approx(0.025, rel=0.02) and abs(out.mean().item()) < 1e-3


def test_windows_smaller_than_the_crop_are_refused() -> None:
    images, labels = _blobs(size=32)
    with pytest.raises(ValueError, match="32x32 are smaller than the 64x64 crop"):
        WindowAugmentation(crop=64)(images, labels)


def test_prepare_batch_moves_and_augments_a_loader_batch() -> None:
    images, labels = _blobs(batch=4, size=48)
    prepare = AugmentingPrepareBatch(WindowAugmentation(crop=32, seed=0))
    out_images, out_labels = prepare({"image": images, "label": labels, "series_uid": ["a"] * 4}, torch.device("cpu"))
    assert out_images.shape == (4, 3, 32, 32) and out_labels.shape == (4, 1, 32, 32)
    assert type(out_images) is torch.Tensor


def test_rotation_turns_the_window_by_other_angles_than_flips_give() -> None:
    # The label's centre of mass (disc and bar) sits off the window's centre: under rotation its
    # angle around the centre spreads over the circle, where flips alone give four positions.
    images, labels = _blobs(batch=64)
    _, out = WindowAugmentation(crop=32, flip=False, rotate=True, seed=5)(images, labels)
    r, c = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = out[:, 0].sum(dim=(1, 2))
    row = (out[:, 0] * r).sum(dim=(1, 2)) / mass - 15.5
    col = (out[:, 0] * c).sum(dim=(1, 2)) / mass - 15.5
    sectors = set(((torch.atan2(row, col) + torch.pi) / (2 * torch.pi) * 8).long().clamp(max=7).tolist())
    assert len(sectors) >= 6  # most of the eight 45-degree sectors are visited
