"""Segmentation augmentation on whole batches, on the training device (the LUNA book's way).

Per-sample MONAI transforms (two ``RandFlipd``, ``RandAffined``, ``RandSpatialCropd``,
``RandGaussianNoised``) cost about 4 ms per 7x96x96 window on one CPU core, five times the
U-Net's own training step per sample, so a 2-core machine spent most of each step waiting for
data and a GPU would have waited far longer. Here the loader only reads windows; flips,
rotation, scale and the random crop are folded into one sampling grid per sample and applied
to the batch with a single ``grid_sample`` (bilinear for the image, nearest for the label),
then noise is added, all where the batch already is.

Draws come from a seeded ``torch.Generator`` on the CPU, so a run is reproducible whatever the
device, and ranks of a multi-process run differ by their seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.engines.utils import PrepareBatch


class WindowAugmentation:
    """Random flips, rotation, per-axis scale and ``crop`` x ``crop`` crop of (B, C, H, W)
    windows and their (B, 1, H, W) labels in one resampling, plus Gaussian noise on the image.

    - ``flip``: each in-plane axis mirrored with probability 1/2;
    - ``rotate``: angle uniform in [-pi, pi] (nodules have no preferred orientation);
    - ``scale_range``: each axis scaled by a factor uniform in ``[1 - s, 1 + s]``;
    - the crop's centre is uniform over the positions where a ``crop`` square fits in the
      window (after rotation and scale), as a random crop of the transformed window;
    - ``noise_std``: standard deviation of the additive noise, in the image's units.

    Outside the window the image repeats its border and the label is background.
    """

    def __init__(
        self,
        crop: int,
        flip: bool = True,
        rotate: bool = True,
        scale_range: float = 0.0,
        noise_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        if not 0.0 <= scale_range < 1.0:
            raise ValueError(f"scale_range must be in [0, 1), got {scale_range}")
        if noise_std < 0.0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.crop = int(crop)
        self.flip = bool(flip)
        self.rotate = bool(rotate)
        self.scale_range = float(scale_range)
        self.noise_std = float(noise_std)
        self.generator = torch.Generator().manual_seed(int(seed))

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, dtype=torch.float64) * (high - low) + low

    def source_grid(self, batch: int, height: int, width: int) -> torch.Tensor:
        """(B, crop, crop, 2) sampling grid in ``grid_sample``'s normalised (x, y) order: output
        pixel ``p`` (from the crop's centre) reads input ``centre + A @ (p + t)``, ``A`` =
        rotation x scale x flips, ``t`` the crop's offset in the transformed window."""
        if height < self.crop or width < self.crop:
            raise ValueError(f"windows of {height}x{width} are smaller than the {self.crop}x{self.crop} crop")
        angle = self._uniform(batch, -math.pi, math.pi) if self.rotate else torch.zeros(batch, dtype=torch.float64)
        s = self.scale_range
        scale = self._uniform(2 * batch, 1.0 - s, 1.0 + s).view(batch, 2) if s > 0 else torch.ones(batch, 2, dtype=torch.float64)
        if self.flip:
            signs = torch.randint(0, 2, (batch, 2), generator=self.generator).to(torch.float64) * 2.0 - 1.0
            scale = scale * signs
        cos, sin = torch.cos(angle), torch.sin(angle)
        # A = R(angle) @ diag(scale_row, scale_col) in (row, col) coordinates
        a = torch.stack(
            [torch.stack([cos * scale[:, 0], -sin * scale[:, 1]], dim=-1), torch.stack([sin * scale[:, 0], cos * scale[:, 1]], dim=-1)],
            dim=1,
        )
        half_r, half_c = (height - self.crop) / 2.0, (width - self.crop) / 2.0
        offset = torch.stack([self._uniform(batch, -half_r, half_r), self._uniform(batch, -half_c, half_c)], dim=-1)
        p = torch.arange(self.crop, dtype=torch.float64) - (self.crop - 1) / 2.0
        pr, pc = torch.meshgrid(p, p, indexing="ij")
        q = torch.stack([pr, pc], dim=-1)[None] + offset[:, None, None, :]  # (B, crop, crop, 2)
        src = torch.einsum("bij,bhwj->bhwi", a, q)
        src_r = src[..., 0] + (height - 1) / 2.0
        src_c = src[..., 1] + (width - 1) / 2.0
        # align_corners=True: -1 and 1 are the centres of the first and last pixels
        return torch.stack([2.0 * src_c / max(width - 1, 1) - 1.0, 2.0 * src_r / max(height - 1, 1) - 1.0], dim=-1).float()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or labels.ndim != 4 or images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[2:]:
            raise ValueError(
                f"expected images (B, C, H, W) and labels (B, 1, H, W) of one size, got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        batch, _, height, width = images.shape
        grid = self.source_grid(batch, height, width).to(images.device)
        out_images = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        out_labels = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)
        if self.noise_std > 0.0:
            noise = torch.randn(out_images.shape, generator=self.generator, dtype=torch.float32)
            out_images = out_images + (noise * self.noise_std).to(out_images.device)
        return out_images, out_labels


class AugmentingPrepareBatch(PrepareBatch):
    """``SupervisedTrainer``'s ``prepare_batch``: move ``image`` and ``label`` to the device, then
    augment them together there."""

    def __init__(self, augment: WindowAugmentation, image_key: str = "image", label_key: str = "label") -> None:
        self.augment = augment
        self.image_key = image_key
        self.label_key = label_key

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(batchdata[self.image_key]).as_subclass(torch.Tensor)
        labels = torch.as_tensor(batchdata[self.label_key]).as_subclass(torch.Tensor)
        images = images.to(device=device, non_blocking=non_blocking, **kwargs)
        labels = labels.to(device=device, non_blocking=non_blocking, **kwargs)
        return self.augment(images, labels)
