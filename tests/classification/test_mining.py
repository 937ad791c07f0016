"""Hard negatives: the highest-scored components that lie on no annotated or excluded finding."""

from __future__ import annotations

import pandas as pd

from lungmonai.classification.mining import hard_negatives

UID = "1.2.3"


def _components(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"series_uid": UID, "center_x": x, "center_y": y, "center_z": z, "p_nodule": p}
                         for x, y, z, p in rows])


def _findings(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"seriesuid": UID, "coordX": x, "coordY": y, "coordZ": z, "diameter_mm": d}
                         for x, y, z, d in rows])


def test_the_best_scored_false_components_are_kept_and_nodule_fragments_never() -> None:
    components = _components([
        (0.0, 0.0, 0.0, 0.99),     # the nodule itself
        (7.0, 0.0, 0.0, 0.98),     # a fragment beyond the hit radius (5 mm) but within the diameter
        (50.0, 0.0, 0.0, 0.90),    # an excluded finding
        (100.0, 0.0, 0.0, 0.80),   # false
        (120.0, 0.0, 0.0, 0.10),   # false, scored low
        (140.0, 0.0, 0.0, 0.50),   # false
    ])
    mined = hard_negatives(components, _findings([(0.0, 0.0, 0.0, 10.0)]), _findings([(50.0, 0.0, 0.0, 4.0)]), per_ct=2)
    assert mined["coordX"].tolist() == [100.0, 140.0]
    assert (mined["class"] == 0).all() and (mined["seriesuid"] == UID).all()


def test_a_ct_without_findings_gives_its_top_components() -> None:
    components = _components([(float(k), 0.0, 0.0, k / 10) for k in range(5)])
    mined = hard_negatives(components, _findings([]).reindex(columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]),
                           None, per_ct=3)
    assert mined["coordX"].tolist() == [4.0, 3.0, 2.0]
