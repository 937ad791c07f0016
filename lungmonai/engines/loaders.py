"""The data loaders of every trained bundle, with the loader settings the project uses everywhere.

Workers stay alive between epochs (``persistent_workers``: restarting them cost each epoch
seconds of start-up on 2 cores), batches are pinned only where a GPU will read them, and a
training epoch drops its last partial batch so every step has the batch size the learning rate
was chosen for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import DataLoader, Dataset
from torch.utils.data import Sampler


def training_loader(
    items: Sequence[dict[str, Any]], transform: Callable, sampler: Sampler, batch_size: int, num_workers: int
) -> DataLoader:
    """``items`` through ``transform``, in ``sampler``'s order, full batches only."""
    return DataLoader(Dataset(data=items, transform=transform), sampler=sampler, batch_size=batch_size,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available(), drop_last=True)


def evaluation_loader(
    items: Sequence[dict[str, Any]], transform: Callable, batch_size: int, num_workers: int, sampler: Sampler | None = None
) -> DataLoader:
    """Every item once, in order (or ``sampler``'s share of them, one per process)."""
    return DataLoader(Dataset(data=items, transform=transform), sampler=sampler, batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, persistent_workers=num_workers > 0)
