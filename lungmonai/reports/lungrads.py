"""Lung-RADS categories of a baseline screening CT, from a nodule's type and size.

Source: ACR Lung-RADS v2022 assessment categories, the rules for a **baseline** (first)
screening exam. :data:`BASELINE_RULES` is that part of the ACR table, one row per rule.

What is covered:

- solid nodules by mean diameter: < 6 mm -> 2, >= 6 to < 8 mm -> 3, >= 8 to < 15 mm -> 4A,
  >= 15 mm -> 4B;
- part-solid nodules: total mean diameter < 6 mm -> 2; otherwise by the solid component's mean
  diameter: < 6 mm -> 3, >= 6 to < 8 mm -> 4A, >= 8 mm -> 4B;
- ground-glass (non-solid) nodules: < 30 mm -> 2, >= 30 mm -> 3;
- a nodule with benign calcification (complete, central, popcorn, concentric rings) -> 1;
- the exam: the highest category of its nodules, 1 when it has none.

Sizes are mean diameters, the mean of the long and short axis, and are compared after
rounding to 0.1 mm (half up), as Lung-RADS measures them: 5.96 mm is 6.0 mm, category 3.

A part-solid nodule whose solid component was not measured (``solid_component_mm=None``) is
rated as if the solid component were as large as the whole nodule: the solid part cannot be
larger, so this is the highest category the nodule could have (the conservative choice, never
an under-call). A nodule under 6 mm in total needs no solid size: it is category 2 either way.

Out of scope, because they need information one CT and its measurements do not give:
category 0 (incomplete exam, infectious findings), 4X (category 3 or 4 nodules with
additional suspicious features, e.g. spiculation or lymphadenopathy: a reader's judgement),
the "S" modifier, every follow-up rule (new, growing, stable or slowly growing nodules),
perifissural and juxtapleural nodules, fat-containing nodules, airway nodules and atypical
cysts, and the volumetric thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

NOT_FOR_CLINICAL_USE = (
    "Research use only, not for clinical use: these Lung-RADS categories are computed by software "
    "from automatic measurements of one baseline CT, not assessed by a radiologist."
)

SOURCE = "ACR Lung-RADS v2022, baseline screening exam"

CATEGORIES: tuple[str, ...] = ("1", "2", "3", "4A", "4B")
"""The categories :func:`nodule_category` returns, least suspicious first."""

_RANK = {c: k for k, c in enumerate(CATEGORIES + ("4X",))}
"""Order for the exam category; 4X is never computed here, but ranked (above 4B) where a reader set it."""

NODULE_TYPES: tuple[str, ...] = ("solid", "part-solid", "ground-glass")

_INF = math.inf

BASELINE_RULES: tuple[tuple[str, str, float, float, str], ...] = (
    # (nodule type, size that decides, from mm (inclusive), to mm (exclusive), category)
    # ACR Lung-RADS v2022, baseline. The first matching row decides.
    ("solid", "mean", 0.0, 6.0, "2"),
    ("solid", "mean", 6.0, 8.0, "3"),
    ("solid", "mean", 8.0, 15.0, "4A"),
    ("solid", "mean", 15.0, _INF, "4B"),
    ("part-solid", "mean", 0.0, 6.0, "2"),  # total mean diameter < 6 mm
    ("part-solid", "solid", 0.0, 6.0, "3"),  # total >= 6 mm from here on
    ("part-solid", "solid", 6.0, 8.0, "4A"),
    ("part-solid", "solid", 8.0, _INF, "4B"),
    ("ground-glass", "mean", 0.0, 30.0, "2"),
    ("ground-glass", "mean", 30.0, _INF, "3"),
)

_ALIASES = {
    "solid": "solid",
    "part-solid": "part-solid",
    "partsolid": "part-solid",
    "part solid": "part-solid",
    "subsolid": "part-solid",
    "ground-glass": "ground-glass",
    "ground glass": "ground-glass",
    "groundglass": "ground-glass",
    "non-solid": "ground-glass",
    "nonsolid": "ground-glass",
    "ggn": "ground-glass",
    "ggo": "ground-glass",
}


def normalise_type(nodule_type: str) -> str:
    """``solid``, ``part-solid`` or ``ground-glass`` for the usual spellings (case, ``_``, non-solid)."""
    key = str(nodule_type).strip().lower().replace("_", "-")
    if key not in _ALIASES:
        raise ValueError(f"unknown nodule type {nodule_type!r}: expected one of {', '.join(NODULE_TYPES)}")
    return _ALIASES[key]


def round_mm(value_mm: float, what: str = "diameter") -> float:
    """A diameter rounded to 0.1 mm, half up (5.95 -> 6.0), after checking it is a size."""
    value = float(value_mm)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{what} must be a finite size in mm >= 0, got {value_mm!r}")
    return float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def nodule_category(nodule_type: str, mean_diameter_mm: float, solid_component_mm: float | None = None,
                    calcified: bool = False) -> str:
    """Lung-RADS v2022 baseline category of one nodule: '1', '2', '3', '4A' or '4B'.

    ``mean_diameter_mm``: mean of long and short axis of the whole nodule.
    ``solid_component_mm``: mean diameter of a part-solid nodule's solid component; unknown
    (None) counts as large as the whole nodule (the highest category it could have).
    ``calcified``: benign calcification, which makes any nodule category 1.
    """
    kind = normalise_type(nodule_type)
    mean = round_mm(mean_diameter_mm, "mean diameter")
    if calcified:
        return "1"
    if kind == "part-solid":
        solid = mean if solid_component_mm is None else round_mm(solid_component_mm, "solid component")
        if solid > mean:
            raise ValueError(f"solid component {solid_component_mm} mm is larger than the nodule ({mean_diameter_mm} mm)")
    else:
        solid = None
    for rule_type, measure, low, high, category in BASELINE_RULES:
        if rule_type != kind:
            continue
        size = mean if measure == "mean" else solid
        if low <= size < high:
            return category
    raise AssertionError(f"no Lung-RADS rule for a {kind} nodule of {mean} mm")  # the table covers [0, inf)


def exam_category(categories: Iterable[str]) -> str:
    """The exam's category: the highest of its nodules' categories; '1' for an exam without nodules.

    '4X', which this module never computes, is accepted where a reader assigned it (above 4B);
    anything else outside :data:`CATEGORIES` (None for a nodule not categorised included) is an
    error: leaving such a nodule out would understate the exam.
    """
    found = []
    for category in categories:
        key = str(category).strip().upper() if isinstance(category, str) else None
        if key not in _RANK:
            raise ValueError(f"unknown Lung-RADS category {category!r}")
        found.append(key)
    return max(found, key=_RANK.__getitem__) if found else "1"
