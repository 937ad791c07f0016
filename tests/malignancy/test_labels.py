"""Soft labels from radiologists' ratings, matched onto nodule items."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lungmonai.malignancy.labels import attach_targets, soft_target


@pytest.mark.parametrize(
    ("ratings", "share", "rating"),
    [([5, 5, 5, 5], 1.0, 1.0), ([1, 1, 1], 0.0, 0.0), ([4, 2, 4], 2 / 3, (10 / 3 - 1) / 4), ([3, 3, 4, 5], 0.5, 0.6875)],
)
def test_soft_target(ratings: list[int], share: float, rating: float) -> None:
    assert soft_target(ratings, "share") == pytest.approx(share)
    assert soft_target(ratings, "rating") == pytest.approx(rating)


def test_unknown_mode_and_empty_ratings_are_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        soft_target([4], "vote")
    with pytest.raises(ValueError, match="ratings"):
        soft_target([], "share")


def _malignancy_csv(path: Path) -> Path:
    rows = [
        ("s1", 10.0, 0.0, 0.0, 10.0, True, "[4, 5, 2]"),
        ("s1", 50.0, 0.0, 0.0, 6.0, False, "[1, 2]"),
        ("s2", 0.0, 0.0, 0.0, 8.0, False, "[3, 4, 1, 1]"),
    ]
    frame = pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool", "mal_details"])
    for axis in "XYZ":
        frame[f"bboxLow{axis}"] = 0.0
        frame[f"bboxHigh{axis}"] = 1.0
    frame["len_mal_details"] = frame["mal_details"].map(lambda s: len(s.split(",")))
    frame.to_csv(path, index=False)
    return path


def test_attach_targets_matches_nearest_nodule_of_the_series(tmp_path: Path) -> None:
    csv = _malignancy_csv(tmp_path / "annotations_with_malignancy.csv")
    items = [
        {"series_uid": "s1", "center_xyz": [10.5, 0, 0], "diameter_mm": 10.0, "is_malignant": 1, "label": 1},
        {"series_uid": "s1", "center_xyz": [50, 0.2, 0], "diameter_mm": 6.0, "is_malignant": 0, "label": 0},
        {"series_uid": "s2", "center_xyz": [0, 0, 0], "diameter_mm": 8.0, "is_malignant": 0, "label": 0},
        {"series_uid": "s2", "center_xyz": [30, 0, 0], "diameter_mm": 8.0, "is_malignant": 1, "label": 1},  # no match
    ]
    share = attach_targets(items, "share", csv)
    assert [t["label"] for t in share] == pytest.approx([2 / 3, 0.0, 0.25, 1.0])
    assert [t["is_malignant"] for t in share] == [1, 0, 0, 1]  # hard label kept for sampler and metrics
    assert share[0]["ratings"] == "[4, 5, 2]"
    hard = attach_targets(items, "hard")
    assert [t["label"] for t in hard] == [1.0, 0.0, 0.0, 1.0]
    assert items[0]["label"] == 1  # inputs untouched
    with pytest.raises(ValueError, match="annotations_with_malignancy"):
        attach_targets(items, "share", None)
