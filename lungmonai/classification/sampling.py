"""Class-balanced epochs over a heavily unbalanced candidate list.

LUNA16 has about 400 negatives per positive; trained on the natural distribution a network
learns to answer "not a nodule" always. The book's remedy, kept here: interleave one positive
with ``ratio`` negatives, repeat the positives as often as needed, reshuffle every epoch, and fix
the epoch length in samples rather than in passes over the data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data.distributed import DistributedSampler

from lungmonai.data.epoch_order import cycled_permutation, rank_block, rank_share


def balanced_indices(
    labels: Sequence[bool] | np.ndarray, ratio: int, num_samples: int, seed: int | Sequence[int]
) -> np.ndarray:
    """Dataset indices for one epoch: pattern P, N*ratio repeated, positives and negatives cycled
    through independently shuffled orders. ``ratio == 0`` means no balancing (plain shuffle)."""
    labels = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    if ratio == 0:
        return rng.permutation(len(labels))[:num_samples] if num_samples <= len(labels) else rng.choice(
            len(labels), size=num_samples, replace=True
        )
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(
            f"balanced sampling needs both classes, got {len(positives)} positives and {len(negatives)} negatives"
        )
    period = ratio + 1
    slot = np.arange(num_samples)
    is_pos_slot = slot % period == 0
    n_pos_needed = int(is_pos_slot.sum())
    n_neg_needed = num_samples - n_pos_needed
    out = np.empty(num_samples, dtype=np.int64)
    out[is_pos_slot] = cycled_permutation(positives, n_pos_needed, rng)
    out[~is_pos_slot] = cycled_permutation(negatives, n_neg_needed, rng)
    return out


class BalancedSampler(DistributedSampler):
    """Sampler yielding ``balanced_indices`` for the current epoch; DDP-aware.

    ``set_epoch`` must be called every epoch so each epoch reshuffles. It subclasses
    ``DistributedSampler`` (even in single-process runs) because MONAI's workflows call
    ``set_epoch`` at each epoch start only on ``DistributedSampler`` instances; ``num_replicas``
    and ``rank`` are always passed explicitly, so no process group is needed. With
    ``num_replicas > 1`` every rank draws the same global order from the shared seed and takes its
    own contiguous block of it: each rank keeps the 1:``ratio`` mix (a stride would hand every
    positive slot to the same rank whenever ``ratio + 1`` and the world size share a factor).
    As in ``DistributedSampler`` the order is padded from its start to a multiple of the world
    size, so every rank runs the same number of batches (unequal counts hang DDP's collectives).
    ``num_samples`` is the epoch length summed over all ranks (``len()`` is this rank's share).
    """

    def __init__(
        self,
        labels: Sequence[bool] | np.ndarray,
        ratio: int = 1,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.labels = np.asarray(labels, dtype=bool)
        super().__init__(self.labels, num_replicas=int(num_replicas), rank=int(rank), shuffle=True, seed=seed)
        self.ratio = int(ratio)
        self.num_samples = int(num_samples) if num_samples else len(self.labels)
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.total_size = self.num_samples
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        # (seed, epoch) rather than seed + epoch: runs with neighbouring seeds must not replay
        # each other's epochs shifted by one.
        indices = balanced_indices(self.labels, self.ratio, self.num_samples, (self.seed, self.epoch))
        return iter(rank_block(indices, self.num_replicas, self.rank).tolist())

    def __len__(self) -> int:
        return rank_share(self.num_samples, self.num_replicas)
