"""Epochs that mix nodule windows with windows from places without nodules, by share.

Nodule voxels are about one in ten thousand of a CT; sampled uniformly, a segmenter learns
to mark nothing. The book trains only on windows centred on nodules; here a configurable
share of each epoch also comes from random places and from class-0 candidates (vessels,
scars), so the network also sees what it must leave unmarked, without drowning the nodules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from lungmonai.data.epoch_order import cycled_permutation, rank_block, rank_share


def group_share_indices(
    groups: Sequence[int] | np.ndarray,
    shares: Sequence[float],
    num_samples: int,
    seed: int,
    weights: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """``num_samples`` item indices: each slot picks group g with probability ``shares[g]``
    (renormalised over non-empty groups). Within a group, items cycle through shuffled passes;
    with ``weights`` (one per item, non-negative) a group whose weights are not all equal is
    drawn with replacement in proportion to them instead."""
    groups = np.asarray(groups, dtype=np.int64)
    shares = np.asarray(shares, dtype=np.float64)
    if np.any(shares < 0):
        raise ValueError(f"shares must be non-negative, got {shares.tolist()}")
    pools = [np.flatnonzero(groups == g) for g in range(len(shares))]
    group_weights = np.array([s if len(p) else 0.0 for s, p in zip(shares, pools)])
    if group_weights.sum() <= 0:
        raise ValueError(f"no items in any group with a positive share (group sizes {[len(p) for p in pools]}, shares {shares.tolist()})")
    item_weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    if item_weights is not None and (item_weights.shape != groups.shape or np.any(item_weights < 0) or not np.all(np.isfinite(item_weights))):
        raise ValueError(f"weights must be {len(groups)} finite non-negative numbers, one per item")
    rng = np.random.default_rng(seed)
    slot_group = rng.choice(len(shares), size=num_samples, p=group_weights / group_weights.sum())
    out = np.empty(num_samples, dtype=np.int64)
    for g, pool in enumerate(pools):
        slots = np.flatnonzero(slot_group == g)
        if not len(slots):
            continue
        w = None if item_weights is None else item_weights[pool]
        if w is not None and w.sum() <= 0:
            raise ValueError(f"group {g} has a positive share but every item in it has weight 0")
        if w is None or np.all(w == w[0]):
            out[slots] = cycled_permutation(pool, len(slots), rng)
        else:
            out[slots] = rng.choice(pool, size=len(slots), p=w / w.sum())
    return out


class GroupShareSampler(Sampler[int]):
    """Sampler over :func:`group_share_indices`, a new draw each epoch; DDP-aware.

    Every rank draws the same global order from the shared seed and takes its own block of it,
    all blocks of one length (:func:`~lungmonai.data.epoch_order.rank_block`).
    MONAI only calls ``set_epoch`` on DistributedSampler, so each ``__iter__`` also moves to
    the next epoch by itself (a resumed run therefore replays the first epochs' draws).
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        shares: Sequence[float],
        num_samples: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.groups = np.asarray(groups, dtype=np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.shares = list(shares)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = group_share_indices(self.groups, self.shares, self.num_samples, self.seed + self.epoch, self.weights)
        self.epoch += 1
        return iter(rank_block(indices, self.num_replicas, self.rank).tolist())

    def __len__(self) -> int:
        return rank_share(self.num_samples, self.num_replicas)
