"""DICOM SEG and TID 1500 SR of a DICOM series, through the real ``analyze`` path.

The segmenter is a threshold (nodule wherever the slice is denser than -300 HU), so the mask is
known in advance and each segment can be checked against an independent mapping: every source
voxel looked up, by its patient coordinates, in the nodule's component on the working grid. The
classifier and malignancy networks are the untrained bundles of tests/pipeline (their
probabilities are arbitrary but real); the nodule-type model is the shipped JSON one, so type and
Lung-RADS reach the SR.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from pydicom.sr.codedict import codes
from scipy import ndimage

from lungmonai.geometry import irc_to_xyz, xyz_to_irc_continuous
from lungmonai.io import read_ct
from lungmonai.pipeline import MissingDicomOutputs, PipelineSettings, analyze, analyze_ct, load_models
from lungmonai.reports.dicom_out import DicomOutputError
from tests.helpers import BACKGROUND_HU, NODULE_HU, rotation, write_dicom_series
from tests.pipeline.test_pipeline import REPO, _untrained_bundle

pytestmark = pytest.mark.slow

SHAPE_IRC = (12, 24, 24)
SPACING_XYZ = (1.0, 1.0, 2.0)  # in-plane 1.0 mm onto the 1.5 mm working grid: no nearest-voxel ties
SPHERES = (((3.0, 7.0, 8.0), 3.2), ((8.0, 16.0, 15.0), 4.2))  # (irc centre, radius mm) in the file's voxels
PATIENT = {"PatientName": "Test^Patient", "PatientID": "LM-0001", "StudyDate": "20240102", "AccessionNumber": "ACC123"}
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.1234567"
GEOMETRIES = {  # direction, origin
    "axial": (np.eye(3), (-12.25, -40.5, -101.25)),
    # rows run posterior-to-anterior, the slice normal points to the feet: z descends with the index
    "flipped": (np.diag([1.0, -1.0, -1.0]), (-12.25, 30.75, 40.0)),
    "tilted": (rotation(0.02, -0.03, 0.04), (-12.123456, -40.5, -101.0)),
}
SETTINGS = PipelineSettings(nodule_threshold=0.0, flip_tta_top=0, precision="fp32")


class ThresholdSegmenter(torch.nn.Module):
    """Logit +10 where the window's middle slice is above -300 HU (-0.3 in the [-1, 1] window), else -10."""

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        middle = windows[:, windows.shape[1] // 2:windows.shape[1] // 2 + 1]
        return torch.where(middle > -0.3, 10.0, -10.0)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundles = tmp_path_factory.mktemp("dicom_out") / "bundles"
    for seed, name in enumerate(("nodule_seg", "nodule_cls", "nodule_malignancy")):
        _untrained_bundle(bundles, name, seed)
    return bundles


@pytest.fixture(scope="module")
def models(bundles: Path):
    from lungmonai.nodule_type import load_default_model

    loaded = load_models(bundles, device="cpu")
    return replace(loaded, segmenter=ThresholdSegmenter(), nodule_type=load_default_model(REPO / "bundles"))


def painted(spheres=SPHERES) -> np.ndarray:
    hu = np.full(SHAPE_IRC, BACKGROUND_HU, np.int16)
    spacing_irc = np.array(SPACING_XYZ[::-1])
    grid = np.indices(SHAPE_IRC).transpose(1, 2, 3, 0)
    for center, radius in spheres:
        hu[(((grid - center) * spacing_irc) ** 2).sum(axis=-1) <= radius ** 2] = NODULE_HU
    return hu


def write_series(directory: Path, kind: str = "axial", uid: str = "1.2.826.0.1.3680043.8.498.77",
                 spheres=SPHERES, drop: dict[str, int] | None = None) -> list[Path]:
    """A small CT series with study and patient attributes and a private tag, as a scanner's.
    ``drop``: attribute -> index (in file-name order) of the one slice that lacks it."""
    direction, origin = GEOMETRIES[kind]
    paths = sorted(write_dicom_series(directory, painted(spheres), spacing=SPACING_XYZ, origin=origin,
                                      direction=direction, uid=uid))
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0009, "LUNGMONAI TEST", create=True)
        block.add_new(0x01, "LO", "private note")
        for keyword, index in (drop or {}).items():
            if index == k:
                delattr(ds, keyword)
        ds.save_as(path)
    return paths


def source_headers(series: Path) -> list[pydicom.Dataset]:
    """The source slices in the order the CT's first axis runs."""
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in read_ct(series).slice_files]


def expected_segments(series: Path, models, report: dict) -> list[np.ndarray]:
    """Each reported nodule's component of the pipeline's mask, looked up for every source voxel
    at that voxel's patient coordinates (nearest working-grid voxel)."""
    ct = read_ct(series)
    analysis = analyze_ct(ct, models, SETTINGS)
    labels, _ = ndimage.label(analysis.mask)
    grid = analysis.ct.geometry
    voxels = irc_to_xyz(np.indices(ct.shape_irc).reshape(3, -1).T.astype(np.float64), ct.geometry)
    index = np.floor(xyz_to_irc_continuous(voxels, grid) + 0.5).astype(int)
    index = np.clip(index, 0, np.array(analysis.mask.shape) - 1)
    on_source = labels[tuple(index.T)].reshape(ct.shape_irc)
    segments = []
    for nodule in report["nodules"]:
        center = np.floor(xyz_to_irc_continuous(np.array(nodule["center_xyz"]), grid) + 0.5).astype(int)
        segments.append(on_source == labels[tuple(center)])
    return segments


def measurements(group) -> dict[str, float]:
    return {m.name.meaning: m.value for m in group.get_measurements()}


def assert_new_uids_and_copied_study(obj: pydicom.Dataset, source: pydicom.Dataset) -> None:
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
        uid = pydicom.uid.UID(str(obj.get(keyword)))
        assert uid.is_valid and uid not in (source.SOPInstanceUID, source.SeriesInstanceUID), keyword
    assert obj.StudyInstanceUID == source.StudyInstanceUID
    for keyword in ("PatientName", "PatientID", "StudyDate", "AccessionNumber"):
        assert str(obj.get(keyword)) == str(source.get(keyword)) == str(PATIENT[keyword]), keyword
    # nothing the source did not have: identifying attributes are empty or the source's own
    for keyword in ("PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs", "ReferringPhysicianName",
                    "InstitutionName", "StudyID", "StudyTime", "PatientComments", "EthnicGroup"):
        assert obj.get(keyword) in (None, "") or str(obj.get(keyword)) == str(source.get(keyword)), keyword
    assert [e.tag for e in obj.iterall() if e.tag.is_private] == []


@pytest.mark.parametrize("kind", sorted(GEOMETRIES))
def test_seg_and_sr_match_the_source_slices_and_the_json(kind: str, models, tmp_path: Path) -> None:
    series = tmp_path / "series"
    write_series(series, kind)
    (report,) = analyze(series, tmp_path / "out", SETTINGS, models, pictures=False, dicom_out=True)
    saved = json.loads((tmp_path / "out" / f"{report['series_uid']}_report.json").read_text())
    nodules = saved["nodules"]
    assert len(nodules) == len(SPHERES) and saved["dicom"] == {"seg": f"{report['series_uid']}_seg.dcm",
                                                              "sr": f"{report['series_uid']}_sr.dcm"}
    headers = source_headers(series)
    by_uid = {h.SOPInstanceUID: h for h in headers}

    seg = hd.seg.segread(tmp_path / "out" / saved["dicom"]["seg"])
    assert seg.SegmentationType == "BINARY" and len(seg.SegmentSequence) == len(nodules)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == \
        [float(v) for v in headers[0].ImageOrientationPatient]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in headers[0].PixelSpacing]
    # the source has no SliceThickness: the spacing stands in
    assert float(measures.SpacingBetweenSlices) == float(measures.SliceThickness) == SPACING_XYZ[2]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == \
            [float(v) for v in source.ImagePositionPatient]
    pixels = seg.get_pixels_by_source_instance([h.SOPInstanceUID for h in headers],
                                               assert_missing_frames_are_empty=True)
    for k, expected in enumerate(expected_segments(series, models, saved)):
        assert expected.sum() > 10
        np.testing.assert_array_equal(pixels[..., k].astype(bool), expected)
        assert seg.SegmentSequence[k].SegmentLabel == f"Nodule {k + 1}"

    sr = hd.sr.srread(tmp_path / "out" / saved["dicom"]["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(nodules)
    for k, (group, nodule) in enumerate(zip(groups, nodules)):
        assert group.finding_type == codes.SCT.Nodule
        assert group.referenced_segment.referenced_segment_numbers == [k + 1]
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert group.tracking_uid == seg.SegmentSequence[k].TrackingUID
        assert measurements(group) == {
            "Long axis": nodule["long_axis_mm"], "Short axis": nodule["short_axis_mm"],
            "Diameter": nodule["mean_diameter_mm"], "Volume": nodule["volume_mm3"],
            "Certainty of Finding": nodule["p_nodule"], "Probability of cancer": nodule["p_malignant"]}
        evaluations = {q.name.meaning: q.value.value for q in group.get_qualitative_evaluations()}
        assert nodule["type"] and nodule["lung_rads"]
        assert evaluations == {"Lung-RADS nodule type": nodule["type"],
                               "Assessment Category": f"lung-rads-{nodule['lung_rads']}"}
        (center,) = [item.value for item in group[0].ContentSequence if item.name == codes.DCM.Center]
        np.testing.assert_array_equal(center, np.float32([nodule["center_xyz"]]))
        assert group.finding_sites[0].laterality.meaning.lower() == nodule["side"]

    for obj in (seg, sr):
        assert_new_uids_and_copied_study(obj, headers[0])
    assert seg.SeriesInstanceUID != sr.SeriesInstanceUID and seg.SOPInstanceUID != sr.SOPInstanceUID


def test_nodules_sharing_voxels_each_keep_all_of_theirs(models, tmp_path: Path) -> None:
    from lungmonai.pipeline.report import nodule_component, source_masks

    series = tmp_path / "series"
    write_series(series)
    analysis = analyze_ct(read_ct(series), models, SETTINGS)
    centers = analysis.candidates[["center_i", "center_r", "center_c"]].to_numpy()
    a, b = (nodule_component(analysis.mask, c, analysis.ct.geometry.spacing_irc) for c in centers)
    alone = source_masks(analysis, [a, b])
    together = source_masks(analysis, [a, b, a, None])  # two candidates of one component
    assert together[3] is None
    for got, expected in zip(together, [alone[0], alone[1], alone[0]]):
        assert got[0] == expected[0] and got[1].any()
        np.testing.assert_array_equal(got[1], expected[1])


def test_a_nodule_without_a_mask_is_referenced_by_its_centre(tmp_path: Path) -> None:
    from lungmonai.reports.dicom_out import write_dicom_outputs

    series = tmp_path / "series"
    write_series(series)
    files = read_ct(series).slice_files
    slab = np.zeros((2, 24, 24), bool)
    slab[:, 5:9, 6:8] = True
    records = [{"rank": 1, "center_xyz": [1.5, -2.25, 3.0], "p_nodule": 0.9, "p_malignant": None, "side": None},
               {"rank": 2, "center_xyz": [-4.0, 5.5, 6.25], "p_nodule": 0.8, "p_malignant": 0.25, "side": "left"}]
    names = write_dicom_outputs(files, records, [None, (3, slab)], tmp_path / "out", "ct")
    assert names == {"seg": "ct_seg.dcm", "sr": "ct_sr.dcm"}
    seg = hd.seg.segread(tmp_path / "out" / names["seg"])
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Nodule 2"]
    pixels = seg.get_pixels_by_source_instance([pydicom.dcmread(f).SOPInstanceUID for f in files],
                                               assert_missing_frames_are_empty=True)[..., 0]
    np.testing.assert_array_equal(np.flatnonzero(pixels.any(axis=(1, 2))), [3, 4])
    np.testing.assert_array_equal(pixels[3:5].astype(bool), slab)
    first, second = hd.sr.srread(tmp_path / "out" / names["sr"]).content.get_volumetric_roi_measurement_groups()
    assert first.reference_type == codes.DCM.VolumeSurface and second.reference_type == codes.DCM.ReferencedSegment
    np.testing.assert_array_equal(first.roi[0].value, np.float32([records[0]["center_xyz"]]))
    assert measurements(first) == {"Certainty of Finding": 0.9}  # P(malignant) unknown: left out
    assert measurements(second) == {"Certainty of Finding": 0.8, "Probability of cancer": 0.25}
    assert first.finding_sites[0].laterality is None


def test_a_ct_without_nodules_gets_an_sr_and_no_seg(models, tmp_path: Path) -> None:
    series = tmp_path / "series"
    write_series(series, spheres=())
    (report,) = analyze(series, tmp_path, SETTINGS, models, pictures=False, dicom_out=True)
    assert report["nodules"] == [] and report["dicom"] == {"seg": None, "sr": f"{report['series_uid']}_sr.dcm"}
    sr = hd.sr.srread(tmp_path / report["dicom"]["sr"])
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    (group,) = sr.content.get_image_measurement_groups()
    assert [(q.name, q.value) for q in group.get_qualitative_evaluations()] == [(codes.SCT.Nodule, codes.SCT.Absent)]
    assert not list(tmp_path.glob("*_seg.dcm"))


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "FrameOfReferenceUID"])
def test_a_missing_attribute_names_it_and_its_file_and_the_other_reports_are_written(
        missing: str, models, tmp_path: Path) -> None:
    series = tmp_path / "series"
    write_series(series)
    (first,) = analyze(series, tmp_path / "out", SETTINGS, models, pictures=False, dicom_out=True)
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 2
    paths = write_series(series, drop={missing: 5})

    with pytest.raises(DicomOutputError) as caught:
        analyze(series, tmp_path / "out", SETTINGS, models, pictures=False, dicom_out=True)
    tag = {"StudyInstanceUID": "(0020,000D)", "FrameOfReferenceUID": "(0020,0052)"}[missing]
    assert str(caught.value) == (f"{paths[5]}: no {missing} {tag}, which a DICOM SEG and SR need; "
                                 "the DICOM SEG and SR are not written (the other reports are)")
    saved = json.loads((tmp_path / "out" / f"{first['series_uid']}_report.json").read_text())
    assert len(saved["nodules"]) == len(SPHERES) and saved["dicom"]["file"] == str(paths[5])
    assert (tmp_path / "out" / f"{first['series_uid']}_submission.csv").is_file()
    assert not list((tmp_path / "out").glob("*.dcm"))  # the earlier SEG and SR would not match this report


def test_the_command_line_prints_one_line_and_exits_1(bundles: Path, tmp_path: Path, capsys) -> None:
    from lungmonai.cli import main

    series = tmp_path / "series"
    paths = write_series(series, drop={"FrameOfReferenceUID": 2})
    code = main(["analyze", str(series), "--out", str(tmp_path / "out"), "--dicom-out", "--bundles", str(bundles),
                 "--device", "cpu", "--max_components", "3", "--flip_tta_top", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"lungmonai: error: {paths[2]}: no FrameOfReferenceUID (0020,0052), which a DICOM SEG and SR need; "
        "the DICOM SEG and SR are not written (the other reports are)")
    assert len(list((tmp_path / "out").glob("*_report.json"))) == 1 and not list((tmp_path / "out").glob("*.dcm"))


def test_in_a_folder_the_other_series_get_theirs(models, tmp_path: Path, capsys) -> None:
    good = write_series(tmp_path / "in" / "good", uid="1.2.826.0.1.3680043.8.498.81")
    bad = write_series(tmp_path / "in" / "bad", uid="1.2.826.0.1.3680043.8.498.82", drop={"StudyInstanceUID": 0})
    sitk.WriteImage(sitk.ReadImage([str(p) for p in sorted(good)]), str(tmp_path / "in" / "other.mha"))

    with pytest.raises(MissingDicomOutputs, match=r"^1 of 3 CTs got no DICOM SEG/SR") as caught:
        analyze(tmp_path / "in", tmp_path / "out", SETTINGS, models, pictures=False, dicom_out=True)
    assert [e.path for e in caught.value.errors] == [bad[0]]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.dcm")) == [
        "1.2.826.0.1.3680043.8.498.81_seg.dcm", "1.2.826.0.1.3680043.8.498.81_sr.dcm"]
    assert len(list((tmp_path / "out").glob("*_report.json"))) == 3
    err = capsys.readouterr().err
    assert f"{bad[0]}: no StudyInstanceUID" in err
    assert f"{tmp_path / 'in' / 'other.mha'}: not a DICOM series, so no DICOM SEG/SR" in err
