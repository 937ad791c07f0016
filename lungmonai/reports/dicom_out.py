"""Results as DICOM, for a CT read from a DICOM series: a segmentation (SEG) and a measurement
report (SR, TID 1500), both referencing the source series, so a PACS stores them with the study
and a viewer (3D Slicer, OHIF) overlays the nodules on the images they came from.

- ``<stem>_seg.dcm``: DICOM SEG, BINARY, one segment per reported nodule (most likely first, the
  order of the JSON report), on the source series' own frames: each frame has the position and
  orientation of the slice it derives from. Frames without nodule voxels are left out.
- ``<stem>_sr.dcm``: Comprehensive 3D SR holding a TID 1500 Measurement Report with one TID 1411
  Volumetric ROI group per nodule, which references the nodule's SEG segment and the source
  series, and shares the segment's tracking UID; the SR's evidence lists every source slice.

Coded concepts of each group, chosen from DICOM's own code tables where one fits:

- finding type SCT 27925004 "Nodule", finding site SCT 39607008 "Lung" with the report's side as
  laterality (SCT "Right" / "Left");
- long and short axis: SCT 103339001 "Long axis", SCT 103340004 "Short axis" (mm); mean diameter:
  SCT 81827009 "Diameter" with derivation SCT 373098007 "Mean" (mm), the size Lung-RADS uses;
  volume: SCT 118565006 "Volume" (mm3);
- P(nodule): DCM 111012 "Certainty of Finding" (the likelihood that the finding is what its
  finding type says, a nodule); P(malignant): DCM 111047 "Probability of cancer". Both in
  [0, 1] with the UCUM unit ``{probability}`` (a dimensionless UCUM annotation), the values of the
  JSON report unchanged, not percent;
- nodule type and Lung-RADS category as qualitative evaluations. Neither has a code in DICOM's
  tables for chest CT, so they use the local coding scheme ``99LUNGMONAI`` (DICOM reserves
  designators starting with "99" for local codes): concept "Lung-RADS nodule type" with values
  solid / part-solid / ground-glass, and DCM 111005 "Assessment Category" with values such as
  ``lung-rads-4A`` meaning "Lung-RADS v2022 category 4A";
- the centre (xyz mm) as a SCOORD3D POINT named DCM 111010 "Center" in the segment's frame of
  reference, one more content item of the group: TID 1411 has no row for a centre, and a group
  references exactly one region, here the segment (highdicom reads the group back regardless).
  SCOORD3D stores 32-bit floats.

A value the report leaves empty (no malignancy model, no type model, no component) is left
out, never written as a guess. A nodule without a segmentation component gets no segment; its
group references its centre as a POINT volume surface instead.

Privacy: patient and study attributes come only from the source headers (highdicom copies the
Patient, General Study, Patient Study and clinical-trial modules of the first slice, as far as the
slice has them; the Type 2 ones it lacks are written empty, DICOM's "unknown"); no private tag
is copied or written; the series and instance UIDs are new, the study's is the source's. The
objects hold no pixel text. Research use only: the series descriptions say "not for clinical use".

A source series that lacks an attribute these objects need raises :class:`DicomOutputError`
naming the slice file and the attribute, before anything is written; earlier DICOM outputs of the
same CT are removed then, so they never sit beside a report they do not match.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.cache.atomic import atomic_open
from lungmonai.io.errors import FileProblem

SourceMask = tuple[int, np.ndarray]
"""One nodule on the source grid: (index of its first slice, bool array (slices, rows, columns)
of the slices from there that hold it). Slices, not the whole volume, so twenty nodules of a
400-slice CT do not take twenty CTs' worth of memory."""

SEG_SUFFIX, SR_SUFFIX = "_seg.dcm", "_sr.dcm"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 9901, 9902  # after any scanner series, so viewers list them last
NOT_FOR_CLINICAL_USE = "lungmonai nodules, research use only, not for clinical use"
LOCAL_SCHEME = "99LUNGMONAI"

# Per slice, what a SEG frame and an SR reference are built from (all Type 1 in a SEG or SR).
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
            "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
# Must be one value for the whole series: one study, one series, one patient space.
SHARED = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "ImageOrientationPatient", "Rows", "Columns")
# Type 2 (present, may be empty) in the new objects; highdicom reads them from the source.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber")


class DicomOutputError(FileProblem):
    """The DICOM SEG/SR of a CT cannot be made; the message is ``"<slice file>: <problem>"``."""


def _not_written(problem: str) -> str:
    return f"{problem}; the DICOM SEG and SR are not written (the other reports are)"


def _empty(value: Any) -> bool:
    """Absent, or present without a value (a Type 2 habit some writers apply to Type 1 attributes)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return not value.strip()
    try:
        return len(value) == 0
    except TypeError:
        return False


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    return f"({tag.group:04X},{tag.element:04X})"


def read_source_headers(slice_files: Sequence[Path]) -> list[Any]:
    """The slices' headers (no pixel data), in the given order, checked for what SEG and SR need,
    with the Type 2 patient and study attributes they lack added empty.

    Every slice is checked, since each SEG frame and SR reference names its own slice; the first
    problem found is raised with the file it is in.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if len(slice_files) == 0:
        raise ValueError("no slice files: DICOM outputs need the source series' slices")
    headers = []
    for path in slice_files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError) as error:
            raise DicomOutputError(path, _not_written(f"cannot read its DICOM header again ({error})")) from None
    for path, header in zip(slice_files, headers):
        for keyword in REQUIRED:
            if _empty(header.get(keyword)):
                raise DicomOutputError(path, _not_written(
                    f"no {keyword} {_tag(keyword)}, which a DICOM SEG and SR need"))
    first = headers[0]
    for path, header in zip(slice_files, headers):
        for keyword in SHARED:
            if header.get(keyword) != first.get(keyword):
                raise DicomOutputError(path, _not_written(
                    f"{keyword} {_tag(keyword)} {header.get(keyword)} differs from {first.get(keyword)} "
                    f"in {Path(slice_files[0]).name}; one series needs one value"))
    for header in headers:  # on our copies only: empty is DICOM's "unknown", nothing is made up
        for keyword in TYPE2:
            if keyword not in header:
                setattr(header, keyword, None)
    return headers


def remove_dicom_outputs(out_dir: str | Path, stem: str) -> None:
    """The SEG and SR an earlier analysis of this CT left: beside a new report they would show
    other nodules."""
    for suffix in (SEG_SUFFIX, SR_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            (Path(out_dir) / f"{stem}{suffix}").unlink()


def _slice_spacing(headers: Sequence[Any]) -> float:
    """Distance between neighbouring source slices along their normal (the reader has checked it
    is one value for the series)."""
    if len(headers) < 2:
        return float(headers[0].get("SliceThickness") or 1.0)
    orientation = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers]) @ normal
    return round(float(abs(np.median(np.diff(positions)))), 6)  # positions carry ~12 digits: no 1.99999999999


def _ds_list(values: Any) -> list[str]:
    """DS values as the source wrote them: a SEG frame's position is then the slice's, digit for
    digit, not a reformatted float."""
    return [str(v).strip() for v in values]


def _local(value: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value, LOCAL_SCHEME, meaning)


def _algorithm(version: str) -> tuple[Any, Any]:
    """The algorithm as SEG (sequence) and SR (template) identify it."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return (hd.AlgorithmIdentificationSequence(name="lungmonai", family=codes.cid7162.ArtificialIntelligence,
                                               version=version),
            hd.sr.AlgorithmIdentification(name="lungmonai", version=version))


def _seg_pixels(masks: Sequence[SourceMask], n_slices: int, shape: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Stacked segments (frames, rows, columns, segments) over only the slices some nodule
    touches, and those slices' indices."""
    touched = sorted({lo + k for lo, slab in masks for k in np.flatnonzero(slab.any(axis=(1, 2)))})
    row_of = {s: k for k, s in enumerate(touched)}
    pixels = np.zeros((len(touched), *shape, len(masks)), dtype=np.uint8)
    for seg, (lo, slab) in enumerate(masks):
        if slab.shape[1:] != shape or lo < 0 or lo + len(slab) > n_slices:
            raise RuntimeError(f"a nodule mask of shape {slab.shape} from slice {lo} is not on the source grid "
                             f"({n_slices} slices of {shape})")
        for k in np.flatnonzero(slab.any(axis=(1, 2))):
            pixels[row_of[lo + k], :, :, seg] = slab[k]
    return pixels, touched


def build_segmentation(headers: Sequence[Any], records: Sequence[Mapping[str, Any]],
                       masks: Sequence[SourceMask | None], version: str) -> tuple[Any, dict[int, int]]:
    """The SEG of the nodules that have a mask, and which segment number each record's index got."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    seg_algorithm, _ = _algorithm(version)
    kept = [k for k, m in enumerate(masks) if m is not None and m[1].any()]
    segment_of = {k: number for number, k in enumerate(kept, start=1)}
    descriptions = [hd.seg.SegmentDescription(
        segment_number=segment_of[k], segment_label=f"Nodule {records[k]['rank']}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=seg_algorithm, tracking_uid=records[k]["_tracking_uid"],
        tracking_id=f"Nodule {records[k]['rank']}", anatomic_regions=[codes.SCT.Lung]) for k in kept]
    first = headers[0]
    shape = (int(first.Rows), int(first.Columns))
    # A frame's pixel measures need a slice thickness, which the CT module lets be empty: the
    # slice spacing then. The spacing between slices is the one the positions give, whatever the
    # source says (writers put 1 there), since only the frames holding a nodule are kept and a
    # viewer rebuilds the gaps from it. highdicom takes both from the source headers: these are
    # our copies, never saved.
    spacing = _slice_spacing(headers)
    thickness = spacing if _empty(first.get("SliceThickness")) else float(first.SliceThickness)
    for header in headers:
        if _empty(header.get("SliceThickness")):
            header.SliceThickness = thickness
        header.SpacingBetweenSlices = spacing
    pixels, touched = _seg_pixels([masks[k] for k in kept], len(headers), shape)  # type: ignore[misc]
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="lungmonai",
        manufacturer_model_name="lungmonai", software_versions=version, device_serial_number="0",
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=_ds_list(first.PixelSpacing),
                                                slice_thickness=thickness, spacing_between_slices=spacing),
        plane_orientation=hd.PlaneOrientationSequence(coordinate_system="PATIENT",
                                                      image_orientation=_ds_list(first.ImageOrientationPatient)),
        plane_positions=[hd.PlanePositionSequence(coordinate_system="PATIENT",
                                                  image_position=_ds_list(headers[s].ImagePositionPatient))
                         for s in touched],
        content_label="NODULES", content_description=NOT_FOR_CLINICAL_USE[:64],
        series_description=NOT_FOR_CLINICAL_USE[:64],
    )
    return seg, segment_of


def _measurements(record: Mapping[str, Any]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    probability = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
    rows = [
        ("long_axis_mm", codes.SCT.LongAxis, codes.UCUM.Millimeter, None),
        ("short_axis_mm", codes.SCT.ShortAxis, codes.UCUM.Millimeter, None),
        ("mean_diameter_mm", codes.SCT.Diameter, codes.UCUM.Millimeter, codes.SCT.Mean),
        ("volume_mm3", codes.SCT.Volume, codes.UCUM.CubicMillimeter, None),
        ("p_nodule", codes.DCM.CertaintyOfFinding, probability, None),
        ("p_malignant", codes.DCM.ProbabilityOfCancer, probability, None),
    ]
    return [hd.sr.Measurement(name=name, value=float(record[key]), unit=unit, derivation=derivation)
            for key, name, unit, derivation in rows if record.get(key) is not None]


def _evaluations(record: Mapping[str, Any]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    evaluations = []
    if record.get("type"):
        kind = str(record["type"])
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=_local("nodule-type", "Lung-RADS nodule type"), value=_local(kind, kind.capitalize())))
    if record.get("lung_rads"):
        category = str(record["lung_rads"])
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=codes.DCM.AssessmentCategory,
            value=_local(f"lung-rads-{category}", f"Lung-RADS v2022 category {category}")))
    return evaluations


def _group(record: Mapping[str, Any], seg: Any, segment_number: int | None, first: Any, version: str) -> Any:
    """One nodule's TID 1411 group, with its centre as a SCOORD3D POINT."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    center = np.array([record["center_xyz"]], dtype=np.float64)
    frame_of_reference = str(first.FrameOfReferenceUID)
    region: dict[str, Any]
    if segment_number is not None:
        # By SOP instance and the source series: ReferencedSegment.from_segmentation fails on a SEG
        # of one segment (highdicom shares its segment identification across frames then).
        region = {"referenced_segment": hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=segment_number,
            source_series=hd.sr.SourceSeriesForSegmentation(str(first.SeriesInstanceUID)))}
    else:
        region = {"referenced_volume_surface": hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=center,
            frame_of_reference_uid=frame_of_reference,
            source_series=hd.sr.SourceSeriesForSegmentation(str(first.SeriesInstanceUID)))}
    laterality = {"right": codes.SCT.Right, "left": codes.SCT.Left}.get(str(record.get("side")))
    _, algorithm = _algorithm(version)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=record["_tracking_uid"],
                                                     identifier=f"Nodule {record['rank']}"),
        finding_type=codes.SCT.Nodule, algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung, laterality=laterality)],
        measurements=_measurements(record) or None, qualitative_evaluations=_evaluations(record) or None, **region)
    group[0].ContentSequence.append(hd.sr.Scoord3DContentItem(
        name=codes.DCM.Center, graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=center,
        frame_of_reference_uid=frame_of_reference, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return group


def build_report(headers: Sequence[Any], records: Sequence[Mapping[str, Any]], seg: Any | None,
                 segment_of: Mapping[int, int], version: str) -> Any:
    """The Comprehensive 3D SR: a TID 1500 Measurement Report of every record."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["lungmonai"]), name="lungmonai", model_name="lungmonai"))
    groups = [_group(record, seg, segment_of.get(k), headers[0], version) for k, record in enumerate(records)]
    if not groups:  # TID 1500 holds at least one group: the whole series, "Nodule: Absent"
        groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="No nodule reported"),
            finding_type=codes.SCT.Nodule, algorithm_id=_algorithm(version)[1],
            finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes.SCT.Nodule, value=codes.SCT.Absent)])]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.cid100.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[*headers, *([seg] if seg is not None else [])], content=report[0],
        series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="lungmonai", is_complete=True,
        series_description=NOT_FOR_CLINICAL_USE[:64])


def _save(dataset: Any, path: Path) -> str:
    with atomic_open(path, "wb") as handle:
        dataset.save_as(handle, enforce_file_format=True)
    return path.name


def write_dicom_outputs(slice_files: Sequence[Path], records: Sequence[Mapping[str, Any]],
                        masks: Sequence[SourceMask | None], out_dir: str | Path, stem: str) -> dict[str, str | None]:
    """Write ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` into ``out_dir``; returns their names.

    ``slice_files``: the source series' files in the order of the analysed volume's first axis
    (:attr:`lungmonai.io.volume.CTVolume.slice_files`); ``records``: the JSON report's nodules;
    ``masks``: each record's voxels on that source grid (None where it has none). Without any
    nodule mask there is no SEG (a SEG holds at least one segment) and ``"seg"`` is None; the SR
    is written still, saying what was found; without any nodule, one series-level group
    (TID 1501) with the evaluation "Nodule: Absent" (SCT 27925004, SCT 272519000).
    """
    from lungmonai import __version__

    library_log = logging.getLogger("highdicom")
    if library_log.level == logging.NOTSET:  # its INFO lines (each module copied) are no news to a user
        library_log.setLevel(logging.WARNING)
    out = Path(out_dir)
    if len(masks) != len(records):
        raise ValueError(f"{len(records)} nodule records but {len(masks)} masks")
    try:
        headers = read_source_headers(slice_files)
    except DicomOutputError:
        remove_dicom_outputs(out, stem)
        raise
    from pydicom.uid import generate_uid

    records = [{**r, "_tracking_uid": generate_uid()} for r in records]  # links SEG segment and SR group
    seg, segment_of = None, {}
    if any(m is not None and m[1].any() for m in masks):
        try:
            seg, segment_of = build_segmentation(headers, records, masks, __version__)
        except ValueError as error:  # what highdicom refuses in the source (e.g. slices of two orientations)
            remove_dicom_outputs(out, stem)
            raise DicomOutputError(slice_files[0], _not_written(f"no DICOM SEG can be made: {error}")) from None
    try:
        sr = build_report(headers, records, seg, segment_of, __version__)
    except ValueError as error:  # e.g. a PatientSex that is not M, F or O
        remove_dicom_outputs(out, stem)
        raise DicomOutputError(slice_files[0], _not_written(f"no DICOM SR can be made: {error}")) from None
    names: dict[str, str | None] = {"seg": None, "sr": None}
    if seg is None:
        with contextlib.suppress(FileNotFoundError):
            (out / f"{stem}{SEG_SUFFIX}").unlink()
    else:
        names["seg"] = _save(seg, out / f"{stem}{SEG_SUFFIX}")
    names["sr"] = _save(sr, out / f"{stem}{SR_SUFFIX}")
    return names
