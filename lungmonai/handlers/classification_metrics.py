"""One ignite metric that yields every per-epoch classification figure at once.

MONAI's ROCAUC and ignite's Precision/Recall each keep their own copy of the epoch's outputs;
the per-class losses and accuracies the LUNA book tracks need the same outputs again. This
metric gathers logits and labels once and completes into ``engine.state.metrics`` under a
prefix (``train_f1``, ``val_auc``...), so StatsHandler and TensorBoardStatsHandler log them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.handlers import from_engine

from lungmonai.metrics.classification import binary_classification_metrics


def _stack(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    return torch.stack([torch.as_tensor(v).detach() for v in values])


class EpochClassificationMetrics(Metric):
    """Binary figures over an epoch from 2-class logits.

    The value under the metric's own name is ``key`` (F1 by default, the checkpoint criterion);
    all figures also land in ``engine.state.metrics`` as ``{prefix}_{figure}``, and the epoch's
    probabilities and labels in ``engine.state.classification_outputs[prefix]`` for figure handlers.
    In distributed runs the outputs of all ranks are gathered before computing.
    """

    def __init__(
        self,
        prefix: str = "val",
        key: str = "f1",
        threshold: float = 0.5,
        output_transform: Callable = from_engine(["pred", "label"]),
        device: str | torch.device = "cpu",
    ) -> None:
        self.prefix = prefix
        self.key = key
        self.threshold = threshold
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, output: Sequence[Any]) -> None:
        logits, labels = output
        self._logits.append(_stack(logits).float().reshape(-1, 2).cpu())
        self._labels.append(_stack(labels).long().reshape(-1).cpu())

    def compute(self) -> dict[str, float]:
        logits = torch.cat(self._logits) if self._logits else torch.zeros(0, 2)
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        logits, labels = _all_gather(logits), _all_gather(labels)
        self._prob = torch.softmax(logits, dim=1)[:, 1].numpy()
        self._label = labels.numpy().astype(bool)
        loss = F.cross_entropy(logits, labels, reduction="none").numpy() if len(labels) else np.zeros(0)
        return binary_classification_metrics(self._prob, self._label, loss=loss, threshold=self.threshold)

    def completed(self, engine: Engine, name: str) -> None:
        figures = self.compute()
        for figure, value in figures.items():
            engine.state.metrics[f"{self.prefix}_{figure}"] = value
        engine.state.metrics[name] = figures[self.key]
        outputs = getattr(engine.state, "classification_outputs", None) or {}
        outputs[self.prefix] = (self._prob, self._label)
        engine.state.classification_outputs = outputs


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank; ranks may hold different numbers of rows
    (a validation sampler that does not pad), so rows are padded to the longest and trimmed."""
    import ignite.distributed as idist

    if idist.get_world_size() <= 1:
        return tensor
    sizes = idist.all_gather(torch.tensor([len(tensor)]))
    longest = int(sizes.max())
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype)
    padded[: len(tensor)] = tensor
    gathered = idist.all_gather(padded).reshape(len(sizes), longest, *tensor.shape[1:])
    return torch.cat([gathered[rank, : int(size)] for rank, size in enumerate(sizes)])
