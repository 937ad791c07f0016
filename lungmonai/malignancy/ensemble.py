"""Several malignancy checkpoints (seeds, runs) as one network that averages probabilities.

On a few hundred nodules single runs differ by several AUC points from seed to seed; the mean
of their probabilities is steadier and usually better than the average member. The ensemble
returns log mean probabilities, so everything downstream that applies a softmax (metrics,
inference) gets exactly the averaged probabilities.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lungmonai.weights import load_into


class ProbabilityEnsemble(nn.Module):
    """``log(mean_k softmax(member_k(x)))`` over the members."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


def load_weights(network: nn.Module, path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A checkpoint written by the bundle (plain state_dict or ``{"model": ...}``) into ``network``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: malignancy checkpoint not found; train one with `python -m monai.bundle run training "
            "--config_file bundles/nodule_malignancy/configs/train.json`"
        )
    return load_into(network, path, map_location=device)


def ensemble_from_checkpoints(
    template: nn.Module, paths: str | Path | Sequence[str | Path], device: torch.device | str = "cpu"
) -> nn.Module:
    """One copy of ``template`` per checkpoint; a single path gives the plain network (no wrapper),
    so single-model evaluation and export are unchanged."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    members = [load_weights(copy.deepcopy(template), p, device).to(device).eval() for p in paths]
    return members[0] if len(members) == 1 else ProbabilityEnsemble(members).to(device).eval()
