"""Epoch composition: shares of nodule / random / candidate windows, DDP strides."""

from __future__ import annotations

import numpy as np
import pytest

from lungmonai.segmentation.sampling import GroupShareSampler, group_share_indices


def test_shares_are_met_and_every_item_of_a_group_is_used() -> None:
    groups = np.array([0] * 10 + [1] * 5 + [2] * 200)
    idx = group_share_indices(groups, [0.5, 0.25, 0.25], 4000, seed=3)
    drawn = groups[idx]
    assert abs((drawn == 0).mean() - 0.5) < 0.03 and abs((drawn == 1).mean() - 0.25) < 0.03
    assert set(idx[drawn == 0]) == set(range(10))  # positives cycle through all of them


def test_empty_groups_give_their_share_to_the_others() -> None:
    groups = np.array([0] * 4 + [1] * 4)
    idx = group_share_indices(groups, [0.5, 0.25, 0.25], 1000, seed=0)
    assert abs((groups[idx] == 0).mean() - 2 / 3) < 0.05
    with pytest.raises(ValueError):
        group_share_indices(groups, [0.0, 0.0, 1.0], 10, seed=0)


def test_sampler_redraws_each_epoch_and_ranks_are_disjoint() -> None:
    groups = np.arange(100) % 3
    sampler = GroupShareSampler(groups, [0.4, 0.3, 0.3], num_samples=50, seed=1)
    first, second = list(sampler), list(sampler)
    assert len(first) == 50 and first != second
    ranks = [GroupShareSampler(groups, [0.4, 0.3, 0.3], 50, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(0)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(ranks[0]) == len(a) == 25 and a + b == first


def test_ranks_run_the_same_number_of_samples() -> None:
    # an odd epoch length: without padding one rank would run a batch more and hang DDP
    groups = np.arange(100) % 3
    ranks = [GroupShareSampler(groups, [0.4, 0.3, 0.3], 63, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    whole = list(GroupShareSampler(groups, [0.4, 0.3, 0.3], 63, seed=1))
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == len(ranks[1]) == 32
    assert a + b == whole + whole[:1]  # padded from the epoch's start


def test_weights_draw_within_a_group_in_proportion_and_leave_other_groups_cycling() -> None:
    groups = np.array([0, 0, 0, 1, 1])
    weights = np.array([1.0, 1.0, 2.0, 1.0, 1.0])  # the third nodule window twice as likely
    idx = group_share_indices(groups, [0.5, 0.5], 8000, seed=2, weights=weights)
    nodule = idx[groups[idx] == 0]
    assert abs((nodule == 2).mean() - 0.5) < 0.03
    assert abs((groups[idx] == 0).mean() - 0.5) < 0.03  # weights never move the group shares
    other = np.bincount(idx[groups[idx] == 1], minlength=5)[3:]
    assert abs(int(other[0]) - int(other[1])) <= 1  # equal weights: the group still cycles through passes
    same = group_share_indices(groups, [0.5, 0.5], 100, seed=2, weights=np.ones(5))
    assert np.array_equal(same, group_share_indices(groups, [0.5, 0.5], 100, seed=2))
    with pytest.raises(ValueError, match="one per item"):
        group_share_indices(groups, [0.5, 0.5], 10, seed=0, weights=[1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="weight 0"):
        group_share_indices(groups, [0.5, 0.5], 10, seed=0, weights=[0.0, 0.0, 0.0, 1.0, 2.0])
