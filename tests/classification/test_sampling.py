"""BalancedSampler: the book's class-balanced epochs, reshuffled per epoch, split across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from lungmonai.classification.sampling import BalancedSampler, balanced_indices

# 3 positives among 20 candidates: positives are scarce, as in LUNA.
LABELS = np.array([False] * 20)
LABELS[[2, 11, 17]] = True
POS = set(np.flatnonzero(LABELS).tolist())
NEG = set(np.flatnonzero(~LABELS).tolist())


@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_every_ratio_plus_one_th_sample_is_positive(ratio):
    order = list(BalancedSampler(LABELS, ratio=ratio, num_samples=60, seed=3))
    assert len(order) == 60
    for k, index in enumerate(order):
        assert (index in POS) == (k % (ratio + 1) == 0), (k, index)


def test_positives_repeat_when_scarce_and_every_pass_is_complete():
    order = list(BalancedSampler(LABELS, ratio=1, num_samples=40, seed=0))
    positives = [i for i in order if i in POS]
    assert len(positives) == 20  # 3 distinct positives, so each repeats
    # cycled through whole shuffled passes: each consecutive group of 3 holds every positive once
    for start in range(0, 18, 3):
        assert set(positives[start : start + 3]) == POS


def test_every_negative_appears_before_any_negative_repeats():
    order = list(BalancedSampler(LABELS, ratio=3, num_samples=60, seed=5))
    negatives = [i for i in order if i in NEG]
    assert len(negatives) == 45
    first_pass = negatives[: len(NEG)]
    assert set(first_pass) == NEG  # no repeat inside the first pass
    assert set(negatives[len(NEG) : 2 * len(NEG)]) == NEG


def test_epochs_differ_and_same_seed_epoch_repeat():
    sampler = BalancedSampler(LABELS, ratio=1, num_samples=40, seed=7)
    sampler.set_epoch(1)
    first = list(sampler)
    assert list(sampler) == first  # iterating twice in one epoch: same order
    sampler.set_epoch(2)
    second = list(sampler)
    assert second != first
    again = BalancedSampler(LABELS, ratio=1, num_samples=40, seed=7)
    again.set_epoch(1)
    assert list(again) == first
    other_seed = BalancedSampler(LABELS, ratio=1, num_samples=40, seed=100)
    other_seed.set_epoch(1)
    assert list(other_seed) != first


def test_ratio_zero_is_the_natural_distribution():
    order = list(BalancedSampler(LABELS, ratio=0, seed=1))
    assert sorted(order) == list(range(len(LABELS)))  # a plain permutation: 3 of 20 positives
    assert order != list(range(len(LABELS)))
    longer = balanced_indices(LABELS, 0, 50, seed=1)
    assert len(longer) == 50 and set(longer.tolist()) <= set(range(20))


def test_default_epoch_length_is_the_dataset_length():
    sampler = BalancedSampler(LABELS, ratio=1)
    assert len(sampler) == len(LABELS) == len(list(sampler))


def test_balancing_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        balanced_indices([True, True], ratio=1, num_samples=4, seed=0)
    with pytest.raises(ValueError, match="both classes"):
        list(BalancedSampler([False] * 5, ratio=2))


@pytest.mark.parametrize("num_samples", [40, 41])
def test_ranks_get_equal_disjoint_blocks_of_one_epoch(num_samples):
    full = BalancedSampler(LABELS, ratio=1, num_samples=num_samples, seed=2)
    full.set_epoch(4)
    whole = list(full)
    parts = []
    for rank in range(2):
        sampler = BalancedSampler(LABELS, ratio=1, num_samples=num_samples, seed=2, num_replicas=2, rank=rank)
        sampler.set_epoch(4)
        parts.append(list(sampler))
        assert len(parts[-1]) == len(sampler) == 20 + num_samples % 2  # equal: DDP needs the same batch count
    # the blocks cover the epoch's order, padded from its start to a multiple of the world size
    assert parts[0] + parts[1] == (whole + whole)[: 2 * len(parts[0])]


@pytest.mark.parametrize(("ratio", "world"), [(1, 2), (3, 2), (2, 3), (1, 4)])
def test_every_rank_keeps_the_class_mix(ratio, world):
    labels = np.zeros(100, bool)
    labels[:5] = True
    for rank in range(world):
        sampler = BalancedSampler(labels, ratio=ratio, num_samples=48, seed=0, num_replicas=world, rank=rank)
        share = labels[list(sampler)].mean()
        assert abs(share - 1 / (ratio + 1)) <= 1 / len(sampler), (rank, share)


def test_is_a_distributed_sampler_without_a_process_group():
    assert not torch.distributed.is_initialized()
    sampler = BalancedSampler(LABELS, ratio=1, num_replicas=2, rank=1)
    assert isinstance(sampler, DistributedSampler)
    with pytest.raises(ValueError):
        BalancedSampler(LABELS, ratio=1, num_replicas=2, rank=2)


class _IndexDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.full((1,), float(index)), "label": torch.tensor(index % 2)}


def test_supervised_trainer_reshuffles_every_epoch():
    """MONAI's workflow calls set_epoch only on DistributedSampler instances; each epoch must differ."""
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    sampler = BalancedSampler(LABELS, ratio=1, num_samples=12, seed=0)
    loader = DataLoader(_IndexDataset(len(LABELS)), sampler=sampler, batch_size=4)
    network = torch.nn.Linear(1, 2)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.0),
        loss_function=torch.nn.CrossEntropyLoss(),
        decollate=False,
    )
    seen: dict[int, list[int]] = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        seen.setdefault(engine.state.epoch, []).extend(engine.state.batch["image"].ravel().int().tolist())

    trainer.run()
    assert sorted(seen) == [1, 2]
    assert len(seen[1]) == len(seen[2]) == 12
    assert seen[1] != seen[2]
    for order in seen.values():  # still balanced: positives at every other slot
        assert [i in POS for i in order] == [k % 2 == 0 for k in range(12)]


def test_neighbouring_seeds_do_not_replay_each_others_epochs() -> None:
    a = BalancedSampler(LABELS, ratio=1, num_samples=40, seed=0)
    b = BalancedSampler(LABELS, ratio=1, num_samples=40, seed=1)
    a.set_epoch(1)
    b.set_epoch(0)
    assert list(a) != list(b)
