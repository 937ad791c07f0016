"""Reach: a nodule counts only if the pipeline's grouping would hand it to the classifier."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from lungmonai.geometry import irc_to_xyz
from lungmonai.io.volume import Geometry
from lungmonai.segmentation.handlers import SegmentationMetrics
from lungmonai.segmentation.reach import NoduleReach
from tests.bundles.conftest import REPO

SHAPE = (12, 40, 40)
GEOMETRY = Geometry(np.zeros(3), np.array([1.0, 1.0, 2.0]), np.eye(3))


class _Volumes:
    """What NoduleReach reads from the crop cache: each series' HU volume and geometry."""

    def read_volume(self, uid: str):
        return np.full(SHAPE, 40, dtype=np.int16), GEOMETRY


def _settings(max_components: int = 300) -> SimpleNamespace:
    return SimpleNamespace(seg_threshold=0.5, erosion_mm=0.0, max_components=max_components)


def _nodule(uid: str, irc: tuple[float, float, float], radius_mm: float = 3.0) -> dict:
    return {"series_uid": uid, "center_xyz": irc_to_xyz(np.array(irc, dtype=float), GEOMETRY).tolist(), "radius_mm": radius_mm}


def _ball(prob: np.ndarray, irc: tuple[int, int, int], radius: int, value: float) -> None:
    i, r, c = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    prob[((i - irc[0]) ** 2 + (r - irc[1]) ** 2 + (c - irc[2]) ** 2) <= radius**2] = value


def _feed(reach: NoduleReach, uid: str, prob: np.ndarray, pad: int = 0) -> None:
    for k, slice_prob in enumerate(prob):
        reach.update(uid, k, np.pad(slice_prob, ((0, pad), (0, pad))))


def test_a_nodule_with_its_own_component_is_reached_and_an_empty_place_is_not() -> None:
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 10, 10), 2, 0.9)
    reach = NoduleReach([_nodule("a", (6, 10, 10)), _nodule("a", (6, 30, 30))], _Volumes(), _settings())
    _feed(reach, "a", prob, pad=8)  # validation slices padded to the U-Net grid
    assert reach.recall() == 0.5 and reach.reached.tolist() == [True, False]


def test_slices_of_a_lung_box_land_where_they_belong_in_the_ct() -> None:
    """Validation hands over each slice's lung box from (row0, col0), padded; a nodule's
    probabilities fed that way reach it, and a ball placed at the box's own (0, 0) does not."""
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 25, 28), 2, 0.9)
    row0, col0 = 15, 20
    reach = NoduleReach([_nodule("a", (6, 25, 28)), _nodule("a", (6, 10, 8))], _Volumes(), _settings())
    for k, slice_prob in enumerate(prob):
        reach.update("a", k, np.pad(slice_prob[row0:, col0:], ((0, 16), (0, 16))), row0, col0)
    assert reach.recall() == 0.5 and reach.reached.tolist() == [True, False]
    shifted = NoduleReach([_nodule("a", (6, 10, 8))], _Volumes(), _settings())
    for k, slice_prob in enumerate(prob):
        shifted.update("a", k, slice_prob[row0:, col0:])  # the same box taken as if it began at (0, 0)
    assert shifted.recall() == 1.0


def test_the_component_cap_drops_a_nodule_that_lower_ranked_clutter_would_not() -> None:
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 20, 20), 2, 0.8)  # the nodule: large, but a lower peak than the clutter
    for k in range(6):
        prob[2 + 2 * (k % 4), 3 + 6 * k, 35] = 0.99  # single-voxel specks ranked first
    nodule = [_nodule("a", (6, 20, 20))]
    capped, roomy = NoduleReach(nodule, _Volumes(), _settings(3)), NoduleReach(nodule, _Volumes(), _settings(300))
    _feed(capped, "a", prob)
    _feed(roomy, "a", prob)
    assert capped.recall() == 0.0 and roomy.recall() == 1.0


def test_a_nodule_merged_with_a_vessel_is_not_reached_though_touched() -> None:
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 20, 8), 2, 0.9)
    prob[5:8, 19:22, 8:38] = 0.9  # a vessel running off the nodule pulls the centre away
    reach = NoduleReach([_nodule("a", (6, 20, 8))], _Volumes(), _settings())
    _feed(reach, "a", prob)
    assert reach.recall() == 0.0


def test_series_are_grouped_one_at_a_time_and_must_arrive_together() -> None:
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 10, 10), 2, 0.9)
    reach = NoduleReach([_nodule("a", (6, 10, 10)), _nodule("b", (6, 10, 10))], _Volumes(), _settings())
    _feed(reach, "a", prob)
    _feed(reach, "b", np.zeros(SHAPE, np.float32))
    assert reach.reached.tolist() == [True, False]
    with pytest.raises(ValueError, match="series a: its slices arrived in two runs"):
        reach.update("a", 0, prob[0])
    reach.reset()
    _feed(reach, "a", prob)  # a new epoch starts clean
    assert reach.recall() == 0.5


def test_the_checkpoint_score_follows_reach_when_it_is_given() -> None:
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 10, 10), 2, 0.9)
    nodules = [dict(_nodule("a", (6, 10, 10)), center_irc=[6, 10, 10], spacing_irc=[2.0, 1.0, 1.0]),
               dict(_nodule("a", (6, 30, 30)), center_irc=[6, 30, 30], spacing_irc=[2.0, 1.0, 1.0])]
    metric = SegmentationMetrics("val", nodules=nodules, reach=NoduleReach(nodules, _Volumes(), _settings()))
    metric.reset()
    logits = torch.logit(torch.from_numpy(prob).clamp(1e-4, 1 - 1e-4))[:, None]
    metric._meta = (["a"] * SHAPE[0], list(range(SHAPE[0])), [0] * SHAPE[0], [0] * SHAPE[0])
    metric.update((logits, torch.from_numpy((prob > 0.5).astype(np.float32))[:, None]))
    figures = metric.compute()
    assert figures["nodule_reach"] == 0.5 and figures["nodules_reached"] == 1.0
    assert figures["score"] == pytest.approx(0.5 * (0.5 + figures["f2"]))


def test_the_bundle_wires_reach_to_the_pipeline_settings_and_drops_it_across_processes() -> None:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/nodule_seg/configs/train.json"))
    pipeline = json.loads((REPO / "bundles/contract.json").read_text())["pipeline"]
    settings = parser.get_parsed_content("pipeline_settings")
    assert (settings.seg_threshold, settings.erosion_mm, settings.max_components) == (
        pipeline["seg_threshold"], pipeline["erosion_mm"], pipeline["max_components"])
    assert parser["validate#metric#reach"].replace("::", "#") == "@validate#reach"
    parser.read_config([str(REPO / "bundles/nodule_seg/configs/train.json"), str(REPO / "bundles/nodule_seg/configs/multi_gpu_train.json")])
    assert parser["validate#reach"] is None


def test_without_reach_the_checkpoint_score_falls_back_to_touched_nodules() -> None:
    # What distributed runs use (reach is null there): the mean of touched share and F2, not F2.
    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 10, 10), 2, 0.9)
    nodules = [dict(_nodule("a", (6, 10, 10)), center_irc=[6, 10, 10], spacing_irc=[2.0, 1.0, 1.0]),
               dict(_nodule("a", (6, 30, 30)), center_irc=[6, 30, 30], spacing_irc=[2.0, 1.0, 1.0])]
    metric = SegmentationMetrics("val", nodules=nodules)
    metric.reset()
    logits = torch.logit(torch.from_numpy(prob).clamp(1e-4, 1 - 1e-4))[:, None]
    metric._meta = (["a"] * SHAPE[0], list(range(SHAPE[0])), [0] * SHAPE[0], [0] * SHAPE[0])
    metric.update((logits, torch.from_numpy((prob > 0.5).astype(np.float32))[:, None]))
    figures = metric.compute()
    assert figures["nodule_recall"] == 0.5 and "nodule_reach" not in figures
    assert figures["score"] == pytest.approx(0.5 * (0.5 + figures["f2"]))


def test_series_without_nodules_are_neither_stacked_nor_grouped() -> None:
    reads: list[str] = []

    class Counting(_Volumes):
        def read_volume(self, uid: str):
            reads.append(uid)
            return super().read_volume(uid)

    prob = np.zeros(SHAPE, np.float32)
    _ball(prob, (6, 10, 10), 2, 0.9)
    reach = NoduleReach([_nodule("a", (6, 10, 10))], Counting(), _settings())
    _feed(reach, "empty", prob)
    _feed(reach, "a", prob)
    assert reach.recall() == 1.0 and set(reads) == {"a"}
    assert reads == ["a"]  # one read per series with nodules: the stack's shape and the grouping share it
    with pytest.raises(ValueError, match="series empty"):
        reach.update("empty", 0, prob[0])  # order is still checked


def test_reach_must_score_the_metric_s_own_nodules() -> None:
    nodules = [dict(_nodule("a", (6, 10, 10)), center_irc=[6, 10, 10], spacing_irc=[2.0, 1.0, 1.0])]
    other = [dict(_nodule("a", (6, 30, 30)), center_irc=[6, 30, 30], spacing_irc=[2.0, 1.0, 1.0])]
    with pytest.raises(ValueError, match="same nodules"):
        SegmentationMetrics("val", nodules=nodules, reach=NoduleReach(other, _Volumes(), _settings()))
    with pytest.raises(ValueError, match="same nodules"):
        SegmentationMetrics("val", reach=NoduleReach(nodules, _Volumes(), _settings()))
