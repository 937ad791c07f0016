"""The logistic models separate spheres of known density; the JSON round-trips and is checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungmonai.nodule_type import (
    FEATURES,
    TYPES,
    ModelFileError,
    default_model_path,
    fit_model,
    load_default_model,
    load_model,
    nodule_features,
    predict_type,
    save_model,
)
from tests.nodule_type.spheres import SPACING, sphere_nodule, sphere_set

REPO = Path(__file__).resolve().parents[2]


def features_of(nodules: list) -> np.ndarray:
    return np.array([nodule_features(hu, mask, SPACING) for hu, mask in nodules])


@pytest.fixture(scope="module")
def fitted():  # noqa: ANN201
    nodules, types, calc = sphere_set(30, seed=1)
    return fit_model(features_of(nodules), types, calc, l2=0.1, calc_l2=0.1)


def test_fitted_model_separates_fresh_spheres(fitted) -> None:  # noqa: ANN001
    nodules, types, calc = sphere_set(30, seed=2)
    x = features_of(nodules)
    predicted = [fitted.classes[k] for k in np.argmax(fitted.type_probabilities(x), axis=1)]
    correct = np.array(predicted) == np.array(types)
    assert correct.mean() >= 0.9
    for kind in TYPES:
        assert correct[np.array(types) == kind].mean() >= 0.8, kind
    assert np.mean((fitted.calcified_probability(x) >= 0.5) == np.array(calc)) >= 0.95


def test_predict_type_answers_for_the_report(fitted) -> None:  # noqa: ANN001
    for kind in TYPES:
        hu, mask = sphere_nodule(kind, 8.0, realistic=True, rng=np.random.default_rng(3))
        out = predict_type(hu, mask, SPACING, fitted)
        assert out["type"] == kind and set(out["p"]) == set(TYPES)
        assert sum(out["p"].values()) == pytest.approx(1.0, abs=1e-3) and out["p"][kind] == max(out["p"].values())
        assert out["calcified"] is False and 0.0 <= out["p_calcified"] < 0.5
    hu, mask = sphere_nodule("solid", 8.0, calcified=True, realistic=True, rng=np.random.default_rng(4))
    assert predict_type(hu, mask, SPACING, fitted)["calcified"] is True


def test_json_round_trip_keeps_the_answers(fitted, tmp_path: Path) -> None:  # noqa: ANN001
    path = save_model(fitted, tmp_path / "model.json")
    loaded = load_model(path)
    assert loaded.classes == fitted.classes and loaded.features == FEATURES
    x = features_of(sphere_set(5, seed=7)[0])
    np.testing.assert_allclose(loaded.type_probabilities(x), fitted.type_probabilities(x), atol=1e-4)
    np.testing.assert_allclose(loaded.calcified_probability(x), fitted.calcified_probability(x), atol=1e-4)
    hu, mask = sphere_nodule("part-solid", 7.0, realistic=True)
    assert predict_type(hu, mask, SPACING, path) == predict_type(hu, mask, SPACING, loaded)
    text = path.read_text()
    assert json.loads(text)["features"] == list(FEATURES)  # plain JSON, names included


def _broken(tmp_path: Path, fitted, change) -> Path:  # noqa: ANN001
    data = fitted.to_json()
    change(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\] in the model"),
    (lambda d: d["type"].update(bias=[0, 0]), r"unknown key\(s\) \['bias'\] in type"),
    (lambda d: d["calcified"].update(weights=[]), r"unknown key\(s\) \['weights'\] in calcified"),
    (lambda d: d.pop("feature_scale"), r"lacks key\(s\) \['feature_scale'\]"),
    (lambda d: d["type"].update(coef=d["type"]["coef"][:2]), r"type.coef has shape \(2, 8\), expected \(3, 8\)"),
    (lambda d: d["type"].update(intercept=[0.0]), r"type.intercept has shape \(1,\), expected \(3,\)"),
    (lambda d: d["calcified"].update(coef=[1.0, 2.0]), r"calcified.coef has shape \(2,\), expected \(8,\)"),
    (lambda d: d.update(feature_mean=["a"] * 8), r"feature_mean must be numbers"),
    (lambda d: d["type"].update(classes=["solid", "nodule", "ground-glass"]), "type.classes must be"),
    (lambda d: d.update(features=list(reversed(d["features"]))), "this code measures"),
    (lambda d: d.update(format="other/2"), "format"),
    (lambda d: d["calcified"].update(threshold=2), r"calcified.threshold must be a number in \[0.0, 1.0\]"),
    (lambda d: d.update(feature_scale=[0.0] * 8), "feature_scale must be positive"),
])
def test_malformed_files_are_refused_with_a_clear_message(fitted, tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    path = _broken(tmp_path, fitted, change)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_non_finite_numbers_missing_files_and_bad_json_are_refused(fitted, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(fitted.to_json()).replace(str(fitted.to_json()["calcified"]["intercept"]), "NaN", 1))
    with pytest.raises(ModelFileError, match="non-finite"):
        load_model(path)
    with pytest.raises(ModelFileError, match="no nodule-type model there"):
        load_model(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(tmp_path / "bad.json")


def test_a_type_missing_from_training_is_never_predicted() -> None:
    nodules, types, calc = sphere_set(10, seed=5)
    keep = [k for k, t in enumerate(types) if t != "part-solid"]
    model = fit_model(features_of([nodules[k] for k in keep]), [types[k] for k in keep], [calc[k] for k in keep])
    assert model.classes == ("solid", "ground-glass")
    hu, mask = sphere_nodule("part-solid", 8.0, realistic=True)
    out = predict_type(hu, mask, SPACING, model)
    assert out["p"]["part-solid"] == 0.0 and out["type"] in ("solid", "ground-glass")


def test_fitting_needs_two_types_and_both_calcification_kinds() -> None:
    nodules, types, calc = sphere_set(4, seed=6)
    x = features_of(nodules)
    with pytest.raises(ValueError, match="all solid"):
        fit_model(x[:4], types[:4], calc[:4])
    with pytest.raises(ValueError, match="calcified or none"):
        fit_model(x, types, [False] * len(types))
    with pytest.raises(ValueError, match="unknown nodule type"):
        fit_model(x, ["nodule"] * len(types), calc)


def test_shipped_model_loads_from_the_bundles_and_reads_clean_spheres() -> None:
    path = default_model_path(REPO / "bundles")
    assert path == (REPO / "bundles/nodule_type/configs/model.json").resolve()
    model = load_default_model(REPO / "bundles")
    assert model.classes == TYPES
    record = model.training
    assert record["counts"]["train"]["nodules"] > 0 and "readers_leave_one_out" in record["val"]
    assert record["dataset"]["mode"] == "full"  # fitted on LUNA16-resolution CTs, as the pipeline reads
    for kind in ("solid", "ground-glass"):
        hu, mask = sphere_nodule(kind, 8.0, realistic=True, rng=np.random.default_rng(8))
        assert predict_type(hu, mask, SPACING, model)["type"] == kind
