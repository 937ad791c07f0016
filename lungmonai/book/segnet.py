"""The segmentation network of *Deep Learning with PyTorch* (part 2, chapter 13), rebuilt so the
book's published state dict loads into it strictly.

Architecture (the book's ``UNetWrapper`` with ``depth=3, wf=4, padding=True, batch_norm=True,
up_mode='upconv'``):

* ``input_batchnorm``: a ``BatchNorm2d`` over the ``in_channels`` context slices (7: slice k and
  three neighbours on each side), standing in for intensity normalisation;
* ``unet``: a 2D U-Net of depth 3 with ``channels`` (16, 32, 64) feature maps (width factor 4:
  ``2 ** (4 + level)``). Each level is a block of two 3x3 convolutions with padding, each followed
  by a ReLU and then a batch norm; between levels the resolution is halved by 2x2 *average*
  pooling. On the way up a 2x2 stride-2 transposed convolution doubles the resolution and halves
  the channels, its output is concatenated (first) with the skip connection of the same level,
  and a block as above merges them. A 1x1 convolution gives ``out_channels`` maps;
* the book then applies a sigmoid. ``output="logits"`` (the default) leaves it out, because the
  project's :func:`lungmonai.segmentation.inference.segment_ct` and the segmentation losses
  apply the sigmoid themselves; ``output="probabilities"`` keeps it, for comparing with the book.

The module and parameter names follow the book's checkpoint keys
(``unet.down_path.<level>.block.<i>``, ``unet.up_path.<level>.up`` /
``.conv_block.block.<i>``, ``unet.last``), so ``load_state_dict(book_state, strict=True)``
works without renaming. Inputs need heights and widths divisible by ``2 ** (len(channels) - 1)``
(the pipeline pads slices to a multiple of 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OUTPUTS = ("logits", "probabilities")


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (padded, so the size is kept), each then ReLU, then batch norm.

    ``block`` indices 0 and 3 are the convolutions, 2 and 5 the batch norms (1 and 4, the ReLUs,
    hold no parameters), which is where the book's checkpoint has its tensors."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Double the resolution with a transposed convolution, join the skip connection, merge."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv_block = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class UNet2d(nn.Module):
    """The U-Net body: ``down_path`` (one :class:`ConvBlock` per level), ``up_path`` (one
    :class:`UpBlock` per level but the deepest, deepest first) and ``last`` (1x1 convolution)."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be one or more positive widths, got {channels}")
        widths = [int(in_channels), *channels]
        self.down_path = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.up_path = nn.ModuleList(
            UpBlock(channels[i], channels[i - 1]) for i in range(len(channels) - 1, 0, -1)
        )
        self.last = nn.Conv2d(channels[0], int(out_channels), kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, down in enumerate(self.down_path):
            x = down(x)
            if level < len(self.down_path) - 1:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
        for up, skip in zip(self.up_path, reversed(skips)):
            x = up(x, skip)
        return self.last(x)


class BookSegUNet(nn.Module):
    """The book's 2D segmentation network over ``in_channels`` context slices.

    Constructor arguments in the style of the contract's other networks: ``in_channels`` (7 for
    three context slices on each side), ``out_channels`` (1), ``channels`` (feature maps per
    level, (16, 32, 64) for the book's depth 3 and width factor 4), ``output`` ("logits", or
    "probabilities" for the book's final sigmoid).
    """

    def __init__(
        self,
        in_channels: int = 7,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        output: str = "logits",
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.divisor = 2 ** (len(channels) - 1)
        self.input_batchnorm = nn.BatchNorm2d(int(in_channels))
        self.unet = UNet2d(in_channels, out_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.divisor or width % self.divisor:
            raise ValueError(f"input height and width must be divisible by {self.divisor}, got {height}x{width}")
        out = self.unet(self.input_batchnorm(x))
        return torch.sigmoid(out) if self.output == "probabilities" else out
