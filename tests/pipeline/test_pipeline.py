"""The end-to-end analysis on a tiny LUNA16-format dataset with untrained networks.

Untrained weights say nothing about accuracy; these tests pin the plumbing a user relies on:
every CT of the part is analysed, the files are written with the documented columns, the
FROC and confusion table count every annotated nodule exactly once, thresholds are honoured.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser

from lungmonai.geometry import xyz_to_irc
from lungmonai.io import read_ct
from lungmonai.pipeline import PipelineSettings, analyze, analyze_ct, evaluate_split, load_models
from lungmonai.tables.splits import load_split
from lungmonai.malignancy.size_fusion import FUSION_FILE
from tests.conftest import tests_bundles
from tests.helpers import write_dicom_series, write_reoriented

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _untrained_bundle(bundles: Path, name: str, seed: int) -> None:
    root = bundles / name
    shutil.copytree(REPO / "bundles" / name / "configs", root / "configs",
                    ignore=shutil.ignore_patterns(FUSION_FILE.name))  # fitted to the shipped weights
    shutil.copy(tests_bundles() / "contract.json", bundles / "contract.json")
    parser = ConfigParser()
    parser.read_config(str(root / "configs/inference.json"))
    parser["bundles_dir"] = str(bundles)
    torch.manual_seed(seed)
    net = parser.get_parsed_content("network_def")
    (root / "models").mkdir()
    torch.save(net.state_dict(), root / "models/model.pt")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundles = tmp_path_factory.mktemp("trained") / "models_copy"  # any name
    for seed, name in enumerate(("nodule_seg", "nodule_cls", "nodule_malignancy")):
        _untrained_bundle(bundles, name, seed)
    return bundles


@pytest.fixture(scope="module")
def models(bundles: Path):
    return load_models(bundles, device="cpu")


def test_missing_weights_name_the_training_command(tmp_path: Path) -> None:
    shutil.copy(tests_bundles() / "contract.json", tmp_path / "contract.json")
    with pytest.raises(FileNotFoundError, match="nodule_seg/configs/train.json"):
        load_models(tmp_path, device="cpu")


def test_analyze_writes_every_report(tiny_prepared: Path, models, tmp_path: Path) -> None:
    ct_path = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    # Threshold 0 keeps every grouped candidate, so pictures and P(malignant) are exercised.
    settings = PipelineSettings(seg_threshold=0.0, nodule_threshold=0.0, max_components=5)
    reports = analyze(ct_path, tmp_path, settings, models, write_mask=True)
    (report,) = reports
    uid = ct_path.stem
    assert report["series_uid"] == uid and report["candidates"] <= 5
    assert report["components_found"] >= report["candidates"]
    submission = pd.read_csv(tmp_path / f"{uid}_submission.csv")
    assert list(submission.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    assert len(submission) == report["candidates"] and submission["probability"].between(0, 1).all()
    saved = json.loads((tmp_path / f"{uid}_report.json").read_text())
    assert len(saved["nodules"]) == report["candidates"]
    first = saved["nodules"][0]
    assert {"center_xyz", "center_irc", "p_nodule", "p_malignant", "voxels", "diameter_mm"} <= set(first)
    assert 0.0 <= first["p_malignant"] <= 1.0
    for name in saved["pictures"]:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / f"{uid}_mask.nii.gz").is_file()


def test_nodule_threshold_filters_reports_and_malignancy(tiny_prepared: Path, models, tmp_path: Path) -> None:
    ct_path = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    settings = PipelineSettings(seg_threshold=0.0, nodule_threshold=1.0, max_components=5)
    (report,) = analyze(ct_path, tmp_path, settings, models, pictures=False)
    assert report["candidates"] > 0 and report["nodules"] == []
    ct = read_ct(ct_path)
    none_kept = analyze_ct(ct, models, settings).candidates
    assert none_kept["p_malignant"].isna().all()  # the malignancy model only sees kept nodules
    all_kept = analyze_ct(ct, models, replace(settings, nodule_threshold=0.0)).candidates
    assert all_kept["p_malignant"].between(0, 1).all()


def test_malignancy_scores_the_kept_candidates_own_crops(tiny_prepared: Path, models) -> None:
    from lungmonai.classification.inference import class1_probability, crop_images, predict_logits
    from lungmonai.segmentation import segment_ct

    ct = read_ct(sorted(tiny_prepared.glob("subset*/*.mhd"))[0])
    threshold = float(np.quantile(segment_ct(ct, models.segmenter), 0.995))  # many specks
    settings = PipelineSettings(seg_threshold=threshold, erosion_mm=0.0, max_components=6, precision="fp32")
    with pytest.warns(RuntimeWarning, match=rf"^{re.escape(str(ct.source))}: group_segmentation: \d+ components, kept the 6 "):
        middle = float(np.median(analyze_ct(ct, models, settings).candidates["p_nodule"]))  # the cap names its CT
    some = analyze_ct(ct, models, replace(settings, nodule_threshold=middle)).candidates
    kept = some["p_nodule"].to_numpy() >= middle
    assert 0 < kept.sum() < len(some) and some["p_malignant"].isna().to_numpy().tolist() == (~kept).tolist()
    # each kept row's P(malignant) is the malignancy model on that row's crop
    xyz = some.loc[kept, ["center_x", "center_y", "center_z"]].to_numpy()
    expected = class1_probability(predict_logits(models.malignancy, crop_images(ct, xyz, models.crop_transform)))
    # (an untrained model puts every crop near 0.99997: only a tight tolerance tells crops apart)
    np.testing.assert_allclose(some.loc[kept, "p_malignant"].to_numpy(), expected, rtol=1e-7, atol=0)


def test_a_size_fusion_in_the_bundles_changes_p_malignant_and_keeps_the_image_models(
        tiny_prepared: Path, bundles: Path, models, tmp_path: Path) -> None:
    from lungmonai.malignancy.size_fusion import apply_fusion, write_fusion
    from lungmonai.recipe_record import sha256

    fused_bundles = tmp_path / "bundles"
    shutil.copytree(bundles, fused_bundles)
    # weak on the logit: an untrained image model says 0.9999 for every crop
    fusion = {"use": True, "weights": {"intercept": -3.0, "logit_p_image": 0.2, "log_diameter_mm": 0.5}}
    write_fusion(fused_bundles, fusion)
    fused_models = load_models(fused_bundles, device="cpu")
    # (the untrained bundles carry no fusion: the shipped one is fitted to the shipped weights)
    assert fused_models.size_fusion == {**fusion, "model_sha256": sha256(fused_bundles / "nodule_malignancy/models/model.pt")}
    assert not (models.size_fusion or {}).get("use")

    ct_path = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    ct = read_ct(ct_path)
    settings = PipelineSettings(seg_threshold=0.0, nodule_threshold=0.0, max_components=5, precision="fp32")
    plain = analyze_ct(ct, models, settings).candidates
    fused = analyze_ct(ct, fused_models, settings).candidates
    assert len(fused) == len(plain) > 0
    # without a fusion both columns are the image model's; with one, only p_malignant changes
    np.testing.assert_array_equal(plain["p_malignant"], plain["p_malignant_image"])
    np.testing.assert_allclose(fused["p_malignant_image"], plain["p_malignant"], rtol=1e-7, atol=0)
    expected = apply_fusion(fusion, fused["p_malignant_image"].to_numpy(), fused["diameter_mm"].to_numpy())
    np.testing.assert_allclose(fused["p_malignant"], expected)
    assert np.all(np.abs(fused["p_malignant"] - fused["p_malignant_image"]) > 0.1)
    # the report shows both
    analyze(ct_path, tmp_path / "out", settings, fused_models, pictures=False)
    saved = json.loads((tmp_path / "out" / f"{ct_path.stem}_report.json").read_text())
    first = saved["nodules"][0]
    assert first["p_malignant"] != first["p_malignant_image"]


def test_evaluate_counts_every_test_nodule_once(tiny_prepared: Path, models, tmp_path: Path) -> None:
    from lungmonai.segmentation import segment_ct

    first = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    threshold = float(np.quantile(segment_ct(read_ct(first), models.segmenter), 0.995))  # many specks
    settings = PipelineSettings(seg_threshold=threshold, erosion_mm=0.0, nodule_threshold=0.5, max_components=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the cap is summed up, not warned per CT
        metrics = evaluate_split(tiny_prepared, "test", tmp_path, settings, models, n_boot=50, reports=False)
    test_series = load_split(tiny_prepared / "prepared/split.json").series_in("test")
    truth = pd.read_csv(tiny_prepared / "annotations_with_malignancy.csv")
    n_nodules = int(truth["seriesuid"].isin(test_series).sum())
    confusion = metrics["confusion"]
    rows = confusion["matrix"] if "matrix" in confusion else confusion
    assert metrics["series"] == len(test_series)
    assert metrics["froc"]["total_nodules"] == n_nodules
    assert sum(sum(r) for r in rows[1:]) == n_nodules  # benign + malignant rows
    assert 0.0 <= metrics["cpm"] <= 1.0
    assert (tmp_path / "froc.png").stat().st_size > 0 and (tmp_path / "detections.csv").is_file()
    found = metrics["components_found_per_ct"]
    assert set(found) == set(test_series)
    capped = [n for n in found.values() if n > 2]
    summary = (tmp_path / "summary.txt").read_text()
    assert capped, "the test needs a CT where the cap bites"
    assert f"component cap 2 reached in {len(capped)} of {len(test_series)} CTs" in summary


def test_cli_flags_override_the_bundle_settings(monkeypatch, tmp_path: Path) -> None:
    import lungmonai.cli as cli

    seen = {}
    ct = tmp_path / "ct.mhd"
    ct.write_text("")
    monkeypatch.setattr("lungmonai.pipeline.analyze",
                        lambda path, out, settings, write_mask, device, bundles_dir, dicom_out: seen.update(s=settings, device=device))
    assert cli.main(["analyze", str(ct), "--flip_tta_top", "0", "--max_components", "7", "--device", "cpu"]) == 0
    assert seen["s"].flip_tta_top == 0 and seen["s"].max_components == 7
    assert seen["device"] == "cpu"
    assert cli.main(["analyze", str(ct), "--restrict_to_lungs", "false"]) == 0
    assert seen["s"].restrict_to_lungs is False, "the text 'false' switched the lung box on"
    assert cli.main(["analyze", str(ct), "--seg_score_power", "0"]) == 0
    assert seen["s"].seg_score_power == 0.0, "the classifier's probability alone was not reachable from the command line"
    cli.main(["analyze", str(ct)])
    assert seen["s"].flip_tta_top == 32  # the bundles' contract
    assert seen["s"].seg_score_power == 1.0


def test_settings_come_from_the_bundles_directory_given(tmp_path: Path, monkeypatch) -> None:
    from lungmonai.cli import bundle_settings

    copy = tmp_path / "any_name"
    shutil.copytree(REPO / "bundles/nodule_pipeline/configs", copy / "nodule_pipeline/configs")
    contract = json.loads((tests_bundles() / "contract.json").read_text())
    contract["pipeline"]["flip_tta_top"] = 5
    (copy / "contract.json").write_text(json.dumps(contract))
    assert bundle_settings(copy).flip_tta_top == 5 and bundle_settings().flip_tta_top == 32
    monkeypatch.setenv("LUNGMONAI_BUNDLES", str(copy))
    assert bundle_settings().flip_tta_top == 5
    with pytest.raises(FileNotFoundError, match="not a bundles folder"):
        bundle_settings(tmp_path / "nowhere")


def test_cli_names_a_wrong_path_without_loading_models(monkeypatch, tmp_path: Path, capsys) -> None:
    import lungmonai.cli as cli

    def no_models(*args, **kwargs):
        raise AssertionError("models loaded before the input was checked")

    monkeypatch.setattr("lungmonai.pipeline.load_models", no_models)
    monkeypatch.setattr("lungmonai.pipeline.run.load_models", no_models)  # what analyze itself calls
    missing = tmp_path / "nowhere.mhd"
    assert cli.main(["analyze", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lungmonai: error: ") and str(missing) in err and "Traceback" not in err


def _good_header_with(good: Path, key: str, value: str) -> str:
    """``good``'s header text with ``key`` set to ``value``."""
    return re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", good.read_text())


@pytest.mark.parametrize("kind", ["2D", "oversized", "escape"])
def test_unreadable_ct_in_a_folder_is_skipped_and_reported(tiny_prepared: Path, models, tmp_path: Path, capsys,
                                                           kind: str) -> None:
    from lungmonai.pipeline import UnreadableCTs

    folder = tmp_path / "cts"
    folder.mkdir()
    good = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    shutil.copy(good, folder / good.name)
    shutil.copy(good.with_suffix(".raw"), folder / good.with_suffix(".raw").name)
    bad = folder / "broken.mhd"
    if kind == "2D":
        bad.write_text("ObjectType = Image\nNDims = 3\nDimSize = 8 8\nElementType = MET_SHORT\nElementDataFile = broken.raw\n")
    elif kind == "oversized":  # overflows int64 arithmetic
        bad.write_text(_good_header_with(good, "DimSize", "4294967296 4294967296 2"))
    else:
        shutil.copy(good.with_suffix(".raw"), tmp_path / "outside.raw")  # readable, but not the header's
        bad.write_text(_good_header_with(good, "ElementDataFile", "../outside.raw"))
    out = tmp_path / "out"
    with pytest.raises(UnreadableCTs, match="1 of 2 CTs") as caught:
        analyze(folder, out, PipelineSettings(max_components=3), models, pictures=False)
    expected = "outside the header's folder" if kind == "escape" else "DimSize"
    assert str(bad) in str(caught.value) and expected in str(caught.value)
    assert [r["series_uid"] for r in caught.value.reports] == [good.stem]
    assert (out / f"{good.stem}_report.json").is_file()  # the readable CT's analysis is kept
    assert f"skipped {bad}" in capsys.readouterr().err


def test_one_ct_as_mhd_nifti_and_dicom_in_one_folder_gives_the_same_findings(
    tiny_prepared: Path, models, tmp_path: Path
) -> None:
    source = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    ct = read_ct(source)
    folder = tmp_path / "cts"
    (folder / "mhd").mkdir(parents=True)
    for path in (source, source.with_suffix(".raw")):
        shutil.copy(path, folder / "mhd" / path.name)
    sitk.WriteImage(sitk.ReadImage(str(source)), str(folder / "as_nifti.nii.gz"))
    g = ct.geometry
    write_dicom_series(folder / "dicom_series", ct.hu.astype(np.int16), spacing=tuple(g.spacing_xyz),
                       origin=tuple(g.origin_xyz), direction=np.asarray(g.direction), uid=f"{ct.series_uid}.9")
    (folder / "notes").write_text("not a CT")  # neither a CT file nor DICOM: ignored

    reports = analyze(folder, tmp_path / "out", PipelineSettings(max_components=5), models, pictures=False)

    assert sorted(r["series_uid"] for r in reports) == sorted([ct.series_uid, "as_nifti", f"{ct.series_uid}.9"])
    tables = [pd.read_csv(tmp_path / "out" / f"{r['series_uid']}_submission.csv") for r in reports]
    assert len(tables[0]) > 0
    for table in tables[1:]:  # same voxels in patient space, whatever the file format
        assert len(table) == len(tables[0])
        np.testing.assert_allclose(table[["coordX", "coordY", "coordZ"]], tables[0][["coordX", "coordY", "coordZ"]], atol=1e-3)
        np.testing.assert_allclose(table["probability"], tables[0]["probability"], atol=1e-4)


@pytest.mark.parametrize(("bad", "message"), [
    ({"precision": "half"}, "precision"), ({"flip_tta_top": -1}, "flip_tta_top must be >= 0"),
    ({"nodule_threshold": float("nan")}, "nodule_threshold must be a probability"),
    ({"seg_threshold": 1.5}, "seg_threshold must be a probability"), ({"erosion_mm": -1.0}, "erosion_mm"),
    ({"crop_batch_size": 0}, "crop_batch_size must be >= 1"), ({"seg_batch_size": 0}, "seg_batch_size must be >= 1"),
    ({"max_pictures": -1}, "max_pictures must be >= 0"), ({"max_components": -5}, "max_components must be >= 0"),
    ({"restrict_to_lungs": "maybe"}, "restrict_to_lungs: expected a boolean"),
    ({"seg_score_power": -1.0}, "seg_score_power must be >= 0"),
])
def test_settings_refuse_impossible_values(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineSettings(**bad)


def test_flip_tta_rescores_only_the_top_candidates(tiny_prepared: Path, models) -> None:
    from lungmonai.classification.inference import FLIP_DIMS, class1_probability, crop_images, predict_logits
    from lungmonai.segmentation import segment_ct

    ct = read_ct(sorted(tiny_prepared.glob("subset*/*.mhd"))[0])
    # a threshold near the top of the untrained segmentation's output leaves many specks
    threshold = float(np.quantile(segment_ct(ct, models.segmenter), 0.995))
    settings = PipelineSettings(seg_threshold=threshold, erosion_mm=0.0, max_components=6, precision="fp32")
    plain = analyze_ct(ct, models, replace(settings, flip_tta_top=0)).candidates
    rescored = analyze_ct(ct, models, replace(settings, flip_tta_top=2)).candidates
    assert len(plain) == 6 and plain["label"].tolist() == rescored["label"].tolist()
    top = np.argsort(-plain["p_nodule"].to_numpy(), kind="stable")[:2]
    changed = ~np.isclose(plain["p_nodule"], rescored["p_nodule"], atol=1e-6)
    assert set(np.flatnonzero(changed)) <= set(top)
    xyz = plain[["center_x", "center_y", "center_z"]].to_numpy()[top]
    expected = class1_probability(predict_logits(models.classifier, crop_images(ct, xyz, models.crop_transform), flips=FLIP_DIMS))
    np.testing.assert_allclose(rescored["p_nodule_image"].to_numpy()[top], expected, rtol=1e-5)


def test_p_nodule_is_the_classifiers_probability_weighted_by_the_segmentations(tiny_prepared: Path, models,
                                                                                tmp_path: Path) -> None:
    from lungmonai.segmentation import segment_ct

    ct_path = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    ct = read_ct(ct_path)
    # a threshold that leaves components of clearly different segmentation scores
    threshold = float(np.quantile(segment_ct(ct, models.segmenter), 0.99))
    settings = PipelineSettings(seg_threshold=threshold, erosion_mm=0.0, max_components=8, flip_tta_top=0,
                                nodule_threshold=0.0, precision="fp32")
    weighted = analyze_ct(ct, models, settings).candidates
    alone = analyze_ct(ct, models, replace(settings, seg_score_power=0.0)).candidates
    squared = analyze_ct(ct, models, replace(settings, seg_score_power=2.0)).candidates
    assert len(weighted) == 8 and weighted["p_seg_max"].min() < 0.99 * weighted["p_seg_max"].max()
    # the classifier's own probability does not depend on the weighting
    np.testing.assert_allclose(weighted["p_nodule_image"], alone["p_nodule_image"], rtol=1e-6)
    np.testing.assert_allclose(alone["p_nodule"], alone["p_nodule_image"], rtol=0, atol=0)
    np.testing.assert_allclose(weighted["p_nodule"], weighted["p_nodule_image"] * weighted["p_seg_max"], rtol=1e-6)
    np.testing.assert_allclose(squared["p_nodule"], squared["p_nodule_image"] * squared["p_seg_max"] ** 2, rtol=1e-6)
    # the report shows the score, the classifier's own probability and the segmentation's
    analyze(ct_path, tmp_path / "out", settings, models, pictures=False)
    first = json.loads((tmp_path / "out" / f"{ct_path.stem}_report.json").read_text())["nodules"][0]
    assert first["p_nodule"] == pytest.approx(first["p_nodule_image"] * first["p_seg_max"], abs=2e-4)
    assert first["p_nodule"] == pytest.approx(weighted["p_nodule"].max(), abs=1e-4)


def test_nodule_score_counts_a_missing_segmentation_score_as_one() -> None:
    from lungmonai.pipeline.analysis import nodule_score

    score = nodule_score(np.array([0.8, 0.8, 0.8]), np.array([0.5, np.nan, 1.0]), 2.0)
    np.testing.assert_allclose(score, [0.2, 0.8, 0.8])


def test_the_books_way_segments_whole_slices_and_classifies_every_component(tiny_prepared: Path, models,
                                                                            monkeypatch) -> None:
    import lungmonai.pipeline.analysis as analysis
    from lungmonai.segmentation import segment_ct

    ct = read_ct(sorted(tiny_prepared.glob("subset*/*.mhd"))[0])
    threshold = float(np.quantile(segment_ct(ct, models.segmenter), 0.995))
    settings = PipelineSettings(seg_threshold=threshold, erosion_mm=0.0, max_components=3, flip_tta_top=0, precision="fp32")
    asked = []
    monkeypatch.setattr(analysis, "segment_ct", lambda *a, **k: asked.append(k["restrict_to_lungs"]) or segment_ct(*a, **k))
    capped = analyze_ct(ct, models, settings)
    every = analyze_ct(ct, models, replace(settings, max_components=0, restrict_to_lungs=False))
    assert asked == [True, False]
    assert len(capped.candidates) == 3 < every.components_found == len(every.candidates)


def test_evaluation_refuses_the_train_part(tiny_prepared: Path, models, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        evaluate_split(tiny_prepared, "train", tmp_path, PipelineSettings(), models, n_boot=10)


def test_analysis_erodes_by_the_ct_pixel_size(tiny_prepared: Path, models, monkeypatch) -> None:
    import lungmonai.grouping as grouping

    seen = []
    real = grouping.segmentation_mask
    monkeypatch.setattr(grouping, "segmentation_mask",
                        lambda prob, threshold, erosion_iterations: seen.append(erosion_iterations) or real(prob, threshold=threshold, erosion_iterations=erosion_iterations))
    ct = read_ct(sorted(tiny_prepared.glob("subset*/*.mhd"))[0])
    settings = PipelineSettings(max_components=3, flip_tta_top=0)
    analyze_ct(ct, models, replace(settings, erosion_mm=0.0))
    analyze_ct(ct, models, replace(settings, erosion_mm=3.0 * float(ct.geometry.spacing_xyz[0])))
    assert seen == [0, 3]


def test_a_rerun_leaves_no_pictures_of_nodules_its_report_does_not_list(tiny_prepared: Path, models, tmp_path: Path) -> None:
    ct_path = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    (first,) = analyze(ct_path, tmp_path, PipelineSettings(seg_threshold=0.0, nodule_threshold=0.0, max_components=4), models)
    assert first["pictures"] and len(list(tmp_path.glob("*_nodule*.png"))) == len(first["pictures"])
    (second,) = analyze(ct_path, tmp_path, PipelineSettings(seg_threshold=0.0, nodule_threshold=1.0, max_components=4), models)
    assert second["pictures"] == [] and not list(tmp_path.glob("*_nodule*.png"))


def test_two_cts_with_one_name_do_not_overwrite_each_others_reports(tiny_prepared: Path, models, tmp_path: Path) -> None:
    from lungmonai.pipeline import UnreadableCTs

    source = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    for folder in ("a", "b"):
        (tmp_path / "cts" / folder).mkdir(parents=True)
        for path in (source, source.with_suffix(".raw")):
            shutil.copy(path, tmp_path / "cts" / folder / path.name)
    with pytest.raises(UnreadableCTs, match="1 of 2 CTs") as caught:
        analyze(tmp_path / "cts", tmp_path / "out", PipelineSettings(max_components=3), models, pictures=False)
    assert "same series name" in str(caught.value) and str(tmp_path / "cts/a") in str(caught.value)
    assert json.loads((tmp_path / "out" / f"{source.stem}_report.json").read_text())["source"].startswith(str(tmp_path / "cts/a"))


def test_cli_refuses_an_out_path_that_is_a_file_before_any_analysis(tiny_prepared: Path, monkeypatch, tmp_path: Path, capsys) -> None:
    import lungmonai.cli as cli

    monkeypatch.setattr("lungmonai.pipeline.run.load_models", lambda device=None: pytest.fail("models loaded"))
    taken = tmp_path / "report.txt"
    taken.write_text("keep me")
    ct = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    assert cli.main(["analyze", str(ct), "--out", str(taken)]) == 1
    assert f"{taken}: exists and is not a directory" in capsys.readouterr().err and taken.read_text() == "keep me"


def test_cli_refuses_impossible_settings_as_usage_errors(capsys) -> None:
    import lungmonai.cli as cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["analyze", "ct.mhd", "--crop_batch_size", "0"])
    assert stop.value.code == 2 and "crop_batch_size must be >= 1" in capsys.readouterr().err


def test_a_ct_stored_in_another_axis_order_gives_the_same_findings(tiny_prepared: Path, models, tmp_path: Path) -> None:
    # A coronal-first, flipped NIfTI of the same voxels: the segmenter must still read axial slices
    source = sorted(tiny_prepared.glob("subset*/*.mhd"))[0]
    write_reoriented(source, tmp_path / "turned.nii.gz", (0, 2, 1), (True, False, True))
    settings = PipelineSettings(max_components=5, nodule_threshold=0.0)
    (plain,) = analyze(source, tmp_path / "plain", settings, models, pictures=False)
    (turned,) = analyze(tmp_path / "turned.nii.gz", tmp_path / "turned", settings, models, pictures=False)
    a = pd.read_csv(tmp_path / "plain" / f"{source.stem}_submission.csv")
    b = pd.read_csv(tmp_path / "turned" / "turned_submission.csv")
    np.testing.assert_allclose(b[["coordX", "coordY", "coordZ"]], a[["coordX", "coordY", "coordZ"]], atol=1e-3)
    np.testing.assert_allclose(b["probability"], a["probability"], atol=1e-4)
    stored = read_ct(tmp_path / "turned.nii.gz")  # the report's voxel indices are the file's own
    for nodule in turned["nodules"]:
        assert stored.hu[tuple(nodule["center_irc"])] == read_ct(source).hu[tuple(xyz_to_irc(np.array(nodule["center_xyz"]), read_ct(source).geometry))]


def test_cli_evaluate_names_a_missing_dataset_before_loading_models(monkeypatch, tmp_path: Path, capsys) -> None:
    import lungmonai.cli as cli

    monkeypatch.setattr("lungmonai.pipeline.load_models", lambda device=None: pytest.fail("models loaded"))
    assert cli.main(["evaluate", "--dataset_dir", str(tmp_path / "nowhere")]) == 1
    assert f"{tmp_path / 'nowhere'}: dataset directory not found" in capsys.readouterr().err
