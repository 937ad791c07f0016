"""evaluate_split's truth and edge cases, with the CT reading and the models faked: what is
scored here is the bookkeeping, not the networks (tests/pipeline/test_pipeline.py runs those)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lungmonai.pipeline.evaluation as evaluation
from tests.helpers import MALIGNANCY_HEADER



def _fake_dataset(monkeypatch, tmp_path: Path, series: list[str], detections_xyz: list[tuple[float, float, float]]) -> Path:
    """A dataset directory whose split, CTs and analysis are stand-ins; every CT reports the
    same detections (P(nodule) falling from 0.9, P(malignant) 0.9)."""
    monkeypatch.setattr(evaluation, "require_prepared", lambda p: Path(p))
    monkeypatch.setattr(evaluation, "assert_no_leak", lambda *a, **k: None)
    monkeypatch.setattr(evaluation, "load_split", lambda p: types.SimpleNamespace(series_in=lambda part: list(series)))
    monkeypatch.setattr(evaluation, "find_series", lambda d: {uid: uid for uid in series})
    monkeypatch.setattr(evaluation, "read_ct", lambda path: path)

    def analyze_ct(uid, models, settings):
        xyz = np.asarray(detections_xyz, dtype=np.float64).reshape(-1, 3)
        n = len(xyz)
        candidates = pd.DataFrame({"center_x": xyz[:, 0], "center_y": xyz[:, 1], "center_z": xyz[:, 2],
                                   "p_nodule": np.linspace(0.9, 0.5, n), "p_malignant": np.full(n, 0.9)})
        return types.SimpleNamespace(candidates=candidates, seconds={"all": 1.0}, components_found=n)

    monkeypatch.setattr(evaluation, "analyze_ct", analyze_ct)
    return tmp_path


def _evaluate(dataset: Path, tmp_path: Path, part: str = "test") -> dict:
    models = types.SimpleNamespace(malignancy=object())
    return evaluation.evaluate_split(dataset, part, tmp_path / "out", models=models, n_boot=20, reports=False)


def test_froc_scores_every_luna16_annotation_even_without_lidc_ratings(monkeypatch, tmp_path: Path) -> None:
    # The malignancy table leaves out annotations with no LIDC match; FROC is scored on
    # annotations.csv, so finding that nodule is a hit, and the confusion table counts it benign.
    dataset = _fake_dataset(monkeypatch, tmp_path, ["s1"], [(0, 0, 0), (40, 0, 0)])
    (dataset / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,0,0,0,8\ns1,40,0,0,8\n")
    (dataset / "annotations_with_malignancy.csv").write_text(
        MALIGNANCY_HEADER + 's1,0.0000001,0,0,8,True,"[4, 5, 4]",-4,-4,-4,4,4,4,3\n')
    metrics = _evaluate(dataset, tmp_path)
    assert metrics["froc"]["total_nodules"] == 2
    assert metrics["froc"]["false_positives"] == 0
    assert metrics["cpm"] == pytest.approx(1.0)
    confusion = metrics["confusion"]
    assert confusion["counts"]["Malignant"]["Predicted malignant"] == 1  # matched through the float noise in the centre
    assert confusion["counts"]["Benign"]["Predicted malignant"] == 1  # the unrated annotation: a nodule, not a false positive


def test_series_without_nodules_give_an_undefined_cpm_and_still_every_file(monkeypatch, tmp_path: Path) -> None:
    dataset = _fake_dataset(monkeypatch, tmp_path, ["s1", "s2"], [(0, 0, 0)])
    (dataset / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\nother,0,0,0,8\n")
    with pytest.warns(UserWarning, match="annotations_with_malignancy.csv not found: every annotated nodule counts as benign"):
        metrics = _evaluate(dataset, tmp_path)
    assert metrics["cpm"] is None and metrics["cpm_ci"] == [None, None]
    written = json.loads((tmp_path / "out/metrics.json").read_text())
    assert written["cpm"] is None and written["confusion"]["counts"]["Non-nodule"]["Predicted malignant"] == 2
    assert "CPM undefined: no annotated nodule" in (tmp_path / "out/summary.txt").read_text()


def test_an_empty_part_is_refused_before_any_work(monkeypatch, tmp_path: Path) -> None:
    dataset = _fake_dataset(monkeypatch, tmp_path, [], [])
    (dataset / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with pytest.raises(ValueError, match=r"split\.json: the 'test' part holds no series"):
        _evaluate(dataset, tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_broken_annotations_file_is_named(monkeypatch, tmp_path: Path) -> None:
    dataset = _fake_dataset(monkeypatch, tmp_path, ["s1"], [(0, 0, 0)])
    (dataset / "annotations.csv").write_text("seriesuid,coordX,coordY\ns1,0,0\n")
    with pytest.raises(ValueError, match=r"annotations\.csv: missing column\(s\) \['coordZ', 'diameter_mm'\]"):
        _evaluate(dataset, tmp_path)


def test_malignancy_is_judged_on_the_reported_p_malignant_with_the_image_models_beside_it(monkeypatch, tmp_path: Path) -> None:
    # With a size fusion, the pipeline reports the blend; the evaluation scores that against the
    # measured diameter and shows the image model's own AUC next to it.
    series = [f"s{k}" for k in range(8)]
    malignant = {uid: k < 4 for k, uid in enumerate(series)}
    dataset = _fake_dataset(monkeypatch, tmp_path, series, [])

    def analyze_ct(uid, models, settings):
        bad = malignant[uid]
        candidates = pd.DataFrame({"center_x": [0.0], "center_y": [0.0], "center_z": [0.0], "p_nodule": [0.9],
                                   "p_malignant": [0.8 if bad else 0.2], "p_malignant_image": [0.3 if bad else 0.6],
                                   "diameter_mm": [9.0 + int(uid[1:]) % 3]})
        return types.SimpleNamespace(candidates=candidates, seconds={"all": 1.0}, components_found=1)

    monkeypatch.setattr(evaluation, "analyze_ct", analyze_ct)
    (dataset / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(f"{uid},0,0,0,8\n" for uid in series))
    (dataset / "annotations_with_malignancy.csv").write_text(MALIGNANCY_HEADER + "".join(
        f'{uid},0,0,0,8,{malignant[uid]},"[3, 3, 3]",-4,-4,-4,4,4,4,3\n' for uid in series))
    result = _evaluate(dataset, tmp_path)["malignancy"]
    assert result["nodules"] == 8 and result["malignant"] == 4
    assert result["model_auc"] == pytest.approx(1.0)  # the reported (fused) P(malignant)
    assert result["image_only"]["model_auc"] == pytest.approx(0.0)
    assert result["image_only"]["diameter_auc"] == pytest.approx(result["diameter_auc"])
    assert "image model alone 0.000" in (tmp_path / "out/summary.txt").read_text()
    detections = pd.read_csv(tmp_path / "out/detections.csv")
    assert {"p_malignant", "p_malignant_image", "diameter_mm"} <= set(detections.columns)
    assert (tmp_path / "out/malignancy_roc.png").stat().st_size > 10_000


def test_the_malignancy_roc_figure_puts_the_measured_diameter_beside_the_model(monkeypatch, tmp_path: Path) -> None:
    drawn = {}
    real = evaluation.roc_figure
    monkeypatch.setattr(evaluation, "roc_figure", lambda curves, title: drawn.update(curves) or real(curves, title))
    test_malignancy_is_judged_on_the_reported_p_malignant_with_the_image_models_beside_it(monkeypatch, tmp_path)
    assert list(drawn) == ["P(malignant)", "image model alone", "measured diameter"]
    score, label = drawn["measured diameter"]
    assert len(score) == len(label) == 8 and set(score.tolist()) == {9.0, 10.0, 11.0}
