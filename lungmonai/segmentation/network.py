"""Start the segmenter from "nothing is a nodule": the output bias set to a small prior.

With the recall term weighted (2 in the bundle, 8 in the book), a freshly initialised network
(output 0.5 everywhere) sits in a basin where marking every voxel is cheap: recall is perfect
and plain Dice is near 1 whatever it does, its gradient shrinking with the number of marked voxels. Starting at a
prior of ~1 % marked (the trick of focal-loss detectors) puts the network where Dice's
gradient against false marks is strong, and the recall term raises only nodule voxels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def set_output_prior(network: nn.Module, prior: float = 0.01) -> nn.Module:
    """Set the bias of the network's last convolution (the output layer) to ``logit(prior)``.

    ``prior`` <= 0 leaves the network as it is. Returns ``network`` (for use in configs).
    """
    if prior <= 0:
        return network
    if not 0 < prior < 1:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    last = [m for m in network.modules() if isinstance(m, _CONV)]
    if not last or last[-1].bias is None:
        raise ValueError(f"{type(network).__name__}: no output convolution with a bias to set")
    with torch.no_grad():
        last[-1].bias.fill_(math.log(prior / (1 - prior)))
    return network
