"""The per-CT report agrees with the evaluation's confusion table on which nodules are malignant."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.metrics.confusion import detection_classes
from lungmonai.pipeline.analysis import Analysis, PipelineSettings
import lungmonai.pipeline.report as report
from lungmonai.pipeline.report import nodule_records

REPO = Path(__file__).resolve().parents[2]


def test_malignant_flag_uses_the_unrounded_probability_like_the_confusion_table() -> None:
    p_malignant = np.array([0.49996, 0.5, 0.93])
    candidates = pd.DataFrame({
        "center_x": [0.0, 10.0, 20.0], "center_y": 0.0, "center_z": 0.0, "center_i": 1.0, "center_r": 2.0,
        "center_c": 3.0, "p_nodule": [0.9, 0.8, 0.7], "p_malignant": p_malignant, "voxels": 5, "diameter_mm": 4.0,
    })
    ct = CTVolume(np.zeros((4, 4, 32), np.int16), Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), Path("ct.mhd"), "ct")
    analysis = Analysis(ct=ct, candidates=candidates, mask=np.zeros((4, 4, 32), bool))
    settings = PipelineSettings(nodule_threshold=0.5, malignancy_threshold=0.5)
    records = nodule_records(analysis, settings)
    assert [r["p_malignant"] for r in records] == [0.5, 0.5, 0.93]  # shown rounded
    assert [r["malignant"] for r in records] == [False, True, True]  # decided on the exact value
    classes = detection_classes(candidates["p_nodule"].to_numpy(), p_malignant, nodule_threshold=0.5,
                                malignancy_threshold=0.5)
    assert [bool(c == 3) for c in classes] == [r["malignant"] for r in records]  # 3: predicted malignant


def test_each_picture_shows_the_slice_through_its_own_nodule(tmp_path: Path, monkeypatch) -> None:
    # Slice k of the CT holds 10 k: the axial views of nodules centred at slice 2.496 and 6.5
    # must show slices 2 and 7 (ITK rounds halves up); the report's xyz, rounded to 0.01 mm,
    # would put the first on slice 3.
    hu = np.broadcast_to(np.arange(8, dtype=np.int16)[:, None, None] * 10, (8, 16, 16)).copy()
    ct = CTVolume(hu, Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), Path("ct.mhd"), "ct")
    candidates = pd.DataFrame({
        "series_uid": "ct", "center_x": [8.0, 8.0], "center_y": 8.0, "center_z": [2.496, 6.5], "center_i": [2.496, 6.5], "center_r": 8.0,
        "center_c": 8.0, "p_nodule": [0.9, 0.8], "p_malignant": [0.2, 0.7], "voxels": 5, "diameter_mm": 4.0,
    })
    analysis = Analysis(ct=ct, candidates=candidates, mask=np.zeros(hu.shape, bool))
    shown = []
    original = report.nodule_figure

    def spy(views, caption, **kwargs):
        figure = original(views, caption, **kwargs)
        axial = np.asarray(figure.axes[0].images[0].get_array())  # 60 mm across: NaN beyond this small CT
        shown.append(int(axial[axial.shape[0] // 2, axial.shape[1] // 2]))
        return figure

    monkeypatch.setattr(report, "nodule_figure", spy)
    written = report.write_reports(analysis, tmp_path, PipelineSettings(nodule_threshold=0.5))
    assert shown == [20, 70] and written["pictures"] == ["ct_nodule1.png", "ct_nodule2.png"]


def test_the_side_is_the_patients_whatever_the_origin_and_the_x_direction() -> None:
    from lungmonai.io.volume import Geometry
    from lungmonai.pipeline.report import patient_side

    hu = np.full((4, 40, 60), -1000, dtype=np.int16)
    hu[:, 5:35, 10:50] = 40  # the body, columns 10-49: midline at column 29.5
    for origin_x in (-300.0, 0.0, 250.0):
        forward = Geometry((origin_x, 0.0, 0.0), (0.8, 0.8, 2.0))
        assert patient_side(hu, forward, (2, 20, 15)) == "right"  # x grows toward the patient's left
        assert patient_side(hu, forward, (2, 20, 45)) == "left"
        mirrored = Geometry((origin_x, 0.0, 0.0), (0.8, 0.8, 2.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
        assert patient_side(hu, mirrored, (2, 20, 15)) == "left"  # columns run toward the patient's right
    assert patient_side(np.full((2, 5, 5), -1000, dtype=np.int16), Geometry((0, 0, 0), (1, 1, 1)), (1, 2, 2)) is None


def test_each_nodule_gets_its_type_and_lung_rads_category_from_its_density() -> None:
    from lungmonai.io.volume import CTVolume, Geometry
    from lungmonai.nodule_type import load_default_model
    from lungmonai.pipeline.report import _type_fields

    hu = np.full((20, 40, 40), -850, dtype=np.int16)
    z, y, x = np.mgrid[:20, :40, :40]
    ball = ((z - 10) * 2.0) ** 2 + ((y - 20) * 0.7) ** 2 + ((x - 20) * 0.7) ** 2 <= 25
    lo, hi = np.argwhere(ball).min(axis=0), np.argwhere(ball).max(axis=0) + 1
    component = (lo, ball[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    analysis = SimpleNamespace(ct=CTVolume(hu=hu, geometry=Geometry((0, 0, 0), (0.7, 0.7, 2.0)), source="ct.mhd", series_uid="1"))
    model = load_default_model(REPO / "bundles")

    hu[ball] = 40  # soft tissue: a solid 10 mm nodule is Lung-RADS 4A at baseline
    assert _type_fields(analysis, component, 10.0, model) == {"type": "solid", "calcified": False, "lung_rads": "4A"}
    hu[ball] = -600  # hazy: ground glass under 30 mm is category 2
    assert _type_fields(analysis, component, 10.0, model) == {"type": "ground-glass", "calcified": False, "lung_rads": "2"}
    assert _type_fields(analysis, None, 10.0, model)["lung_rads"] is None
    assert _type_fields(analysis, component, 10.0, None)["type"] is None
