"""One epoch's global sample order, shared by the stages' samplers: shuffled passes, per-rank blocks."""

from __future__ import annotations

import numpy as np


def cycled_permutation(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` items of ``pool``: whole shuffled passes, each pass a fresh permutation."""
    passes = -(-count // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(passes)])[:count]


def rank_share(num_samples: int, num_replicas: int) -> int:
    """Samples each rank runs per epoch: the same for all (see :func:`rank_block`)."""
    return -(-int(num_samples) // int(num_replicas))


def rank_block(indices: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
    """This rank's contiguous block of one epoch's global order, padded from the order's start
    to a multiple of ``num_replicas`` so that every rank gets the same count (DDP's collectives
    hang when one rank runs a batch more than another)."""
    share = rank_share(len(indices), num_replicas)
    return np.resize(indices, share * num_replicas)[rank * share : (rank + 1) * share]
