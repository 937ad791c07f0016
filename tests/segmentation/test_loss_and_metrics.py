"""The Dice + recall loss, voxel figures and the per-nodule recall."""

from __future__ import annotations

import numpy as np
import torch

from lungmonai.segmentation.losses import DiceRecallLoss
from lungmonai.segmentation.metrics import NoduleTouches, nodule_recall, voxel_figures

BIG = 20.0  # a logit whose sigmoid is 1 for all practical purposes


def _logits(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, torch.tensor(BIG), torch.tensor(-BIG))[None, None].float()


def _label() -> torch.Tensor:
    label = torch.zeros(16, 16, dtype=torch.bool)
    label[4:8, 4:8] = True  # 16 nodule pixels
    return label


def test_perfect_prediction_costs_nothing_and_empty_windows_want_no_marks() -> None:
    loss = DiceRecallLoss(recall_weight=8.0)
    label = _label()
    assert loss(_logits(label), label[None, None].float()).item() < 1e-4
    empty = torch.zeros(16, 16, dtype=torch.bool)
    assert loss(_logits(empty), empty[None, None].float()).item() < 1e-4
    marked = empty.clone()
    marked[0, 0] = True
    assert loss(_logits(marked), empty[None, None].float()).item() > 0.4  # 1 - 1/(1+1)


def test_recall_term_punishes_misses_far_more_than_false_marks() -> None:
    label = _label()
    missed = label.clone()
    missed[4:6, 4:8] = False  # 8 of 16 nodule pixels missed
    extra = label.clone()
    extra[10:12, 10:14] = True  # the 16 found, plus 8 false marks
    target = label[None, None].float()
    weighted = DiceRecallLoss(recall_weight=8.0)
    plain = DiceRecallLoss(recall_weight=0.0)
    plain_gap = plain(_logits(missed), target).item() - plain(_logits(extra), target).item()
    assert 0 < plain_gap < 0.15  # plain Dice: 8 misses cost a little more than 8 false marks
    # ... the recall term only sees the misses
    assert weighted(_logits(extra), target).item() - plain(_logits(extra), target).item() < 1e-4
    gap = weighted(_logits(missed), target).item() - weighted(_logits(extra), target).item()
    assert gap > 10 * plain_gap  # 1 - 17/25 = 0.32 of recall loss, weighted 8


def test_voxel_figures() -> None:
    f = voxel_figures(tp=6, fp=2, fn=4, beta=2.0)
    assert np.isclose(f["dice"], 12 / 18) and np.isclose(f["precision"], 0.75) and np.isclose(f["recall"], 0.6)
    assert np.isclose(f["f2"], 5 * 0.75 * 0.6 / (4 * 0.75 + 0.6))
    assert voxel_figures(0, 0, 0)["dice"] == 1.0


def _nodule(uid: str, center_irc: tuple[float, float, float], diameter: float) -> dict:
    return {"series_uid": uid, "center_irc": list(center_irc), "radius_mm": diameter / 2, "diameter_mm": diameter,
            "spacing_irc": [2.0, 1.0, 1.0], "center_xyz": [0.0, 0.0, 0.0]}


def test_per_nodule_recall_counts_marks_within_the_radius_only() -> None:
    nodules = [
        _nodule("a", (10, 20, 20), 8.0),  # radius 4 mm: 2 slices, 4 pixels
        _nodule("a", (10, 40, 40), 6.0),  # radius 3 mm
        _nodule("b", (5, 10, 10), 6.0),  # another series
    ]
    mask = np.zeros((20, 60, 60), dtype=bool)
    mask[11, 22, 23] = True  # nodule 0: dz 2 mm, in-plane 3.6 mm; disk radius sqrt(16-4)=3.46 -> outside
    mask[10, 43, 40] = True  # nodule 1: 3 mm away in-plane, on its centre slice -> touches
    hits = nodule_recall(mask, "a", nodules)
    assert hits.tolist() == [False, True]
    mask[12, 20, 20] = True  # nodule 0: 4 mm above the centre, right on the sphere -> touches
    assert nodule_recall(mask, "a", nodules).tolist() == [True, True]
    touches = NoduleTouches(nodules)
    touches.update("a", 10, mask[10])
    touches.update("b", 5, np.zeros((60, 60), dtype=bool))
    assert touches.hits.tolist() == [False, True, False] and np.isclose(touches.recall(), 1 / 3)


def test_slices_with_an_offset_window_map_back_to_volume_pixels() -> None:
    nodules = [_nodule("a", (3, 30, 30), 4.0)]
    touches = NoduleTouches(nodules)
    window = np.zeros((8, 8), dtype=bool)
    window[2, 3] = True  # voxel (28+2, 27+3) = (30, 30)
    touches.update("a", 3, window, row0=28, col0=27)
    assert touches.hits.tolist() == [True]
