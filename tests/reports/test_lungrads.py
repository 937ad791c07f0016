"""Lung-RADS v2022 baseline categories: every size boundary of each nodule type, calcification,
the unknown solid component, and the exam category."""

from __future__ import annotations

import math

import pytest

from lungmonai.reports.lungrads import (
    BASELINE_RULES,
    CATEGORIES,
    NOT_FOR_CLINICAL_USE,
    exam_category,
    nodule_category,
)


@pytest.mark.parametrize("mean_mm, expected", [
    (0.0, "2"), (3.0, "2"), (5.9, "2"), (5.94, "2"),
    (5.95, "3"), (6.0, "3"), (7.9, "3"),  # 5.95 is measured as 6.0
    (8.0, "4A"), (14.9, "4A"),
    (15.0, "4B"), (40.0, "4B"),
])
def test_solid_baseline_sizes(mean_mm: float, expected: str) -> None:
    assert nodule_category("solid", mean_mm) == expected


@pytest.mark.parametrize("mean_mm, solid_mm, expected", [
    (5.9, 5.0, "2"), (5.9, None, "2"),  # < 6 mm in total: 2 whatever the solid part
    (6.0, 0.0, "3"), (6.0, 5.9, "3"), (20.0, 5.9, "3"),
    (6.0, 6.0, "4A"), (12.0, 7.9, "4A"),
    (8.0, 8.0, "4B"), (25.0, 12.0, "4B"),
])
def test_part_solid_baseline_sizes(mean_mm: float, solid_mm: float | None, expected: str) -> None:
    assert nodule_category("part-solid", mean_mm, solid_component_mm=solid_mm) == expected


@pytest.mark.parametrize("mean_mm, expected", [(6.0, "4A"), (7.9, "4A"), (8.0, "4B"), (20.0, "4B")])
def test_part_solid_without_a_solid_measurement_takes_the_whole_nodule_as_solid(mean_mm: float, expected: str) -> None:
    assert nodule_category("part-solid", mean_mm) == expected
    assert nodule_category("part-solid", mean_mm, solid_component_mm=mean_mm) == expected


@pytest.mark.parametrize("mean_mm, expected", [(5.0, "2"), (29.9, "2"), (29.95, "3"), (30.0, "3"), (55.0, "3")])
def test_ground_glass_baseline_sizes(mean_mm: float, expected: str) -> None:
    assert nodule_category("ground-glass", mean_mm) == expected
    assert nodule_category("non-solid", mean_mm) == expected


@pytest.mark.parametrize("kind", ["solid", "part-solid", "ground-glass"])
@pytest.mark.parametrize("mean_mm", [4.0, 10.0, 35.0])
def test_benign_calcification_is_category_1(kind: str, mean_mm: float) -> None:
    assert nodule_category(kind, mean_mm, calcified=True) == "1"


def test_types_are_read_in_the_usual_spellings_and_bad_input_is_refused() -> None:
    assert nodule_category("Part_Solid", 7.0, 6.5) == "4A"
    assert nodule_category("SOLID", 9.0) == "4A"
    for bad in ("cavitary", ""):
        with pytest.raises(ValueError, match="unknown nodule type"):
            nodule_category(bad, 5.0)
    for size in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="mean diameter"):
            nodule_category("solid", size)
    with pytest.raises(ValueError, match="larger than the nodule"):
        nodule_category("part-solid", 8.0, solid_component_mm=9.0)


def test_table_covers_every_size_of_each_type_without_gaps_or_overlaps() -> None:
    for kind, measure in (("solid", "mean"), ("part-solid", "solid"), ("ground-glass", "mean")):
        rows = [(lo, hi) for k, m, lo, hi, _ in BASELINE_RULES if k == kind and m == measure]
        assert rows[0][0] == 0.0 and rows[-1][1] == math.inf
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    assert {c for *_, c in BASELINE_RULES} <= set(CATEGORIES)


def test_exam_category_is_the_highest() -> None:
    assert exam_category([]) == "1"
    assert exam_category(["2", "1"]) == "2"
    assert exam_category(["3", "4A", "2"]) == "4A"
    assert exam_category(["4B", "4A", "3"]) == "4B"
    assert exam_category(["4a", "3"]) == "4A"
    assert exam_category(["4X", "4B"]) == "4X"  # a reader's 4X stays on top
    assert exam_category(iter(["2", "3"])) == "3"
    for bad in (["5"], ["2", None]):
        with pytest.raises(ValueError, match="unknown Lung-RADS category"):
            exam_category(bad)


def test_not_for_clinical_use_is_a_sentence() -> None:
    assert "not for clinical use" in NOT_FOR_CLINICAL_USE.lower() and NOT_FOR_CLINICAL_USE.endswith(".")
