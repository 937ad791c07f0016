"""DICOM series reader: one directory holding the slices of exactly one series.

GDCM (through SimpleITK) groups files by SeriesInstanceUID, orders slices along the slice
normal by ImagePositionPatient and applies RescaleSlope/RescaleIntercept, so voxels come out
in HU and geometry matches ITK. We add the checks GDCM leaves to the caller: an empty
directory, several series mixed in one directory (reading one silently would drop scans),
single-slice "volumes", values that do not fit int16, and two failures GDCM only warns about
or hides: a damaged slice file is silently left out of the series, and missing slices make ITK
spread the remaining ones evenly (wrong z for every slice after the gap). LUNA16 itself
excluded scans with non-uniform slice spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungmonai.io.discover import looks_like_dicom
from lungmonai.io.errors import CTReadError, check_3d, itk_reason, to_int16_hu
from lungmonai.io.volume import CTVolume, Geometry

_SERIES_UID_TAG = "0020|000e"
_POSITION_TAG = "0020|0032"
# Allowed deviation of one slice step from the median step: 1 % of it plus 1 micrometre.
_SPACING_RTOL, _SPACING_ATOL_MM = 0.01, 1e-3


def _check_nothing_dropped(directory: Path, files: list[Path], names: tuple[str, ...]) -> None:
    used = {Path(name).resolve() for name in names}
    dropped = [p for p in files if p.resolve() not in used and p.name.upper() != "DICOMDIR"
               and looks_like_dicom(p)]
    if dropped:
        raise CTReadError(
            directory,
            f"{len(dropped)} DICOM file(s) could not be read into the series (truncated or "
            f"corrupt?): {', '.join(p.name for p in sorted(dropped)[:5])}",
        )


def _check_uniform_slices(directory: Path, reader: sitk.ImageSeriesReader, image: sitk.Image) -> None:
    """Slice positions along the normal must step evenly, or ITK's single z spacing is a lie."""
    count = image.GetSize()[2]
    if not all(reader.HasMetaDataKey(k, _POSITION_TAG) for k in range(count)):
        return
    try:
        positions = np.array(
            [[float(v) for v in reader.GetMetaData(k, _POSITION_TAG).split("\\")] for k in range(count)]
        )
    except ValueError:
        raise CTReadError(directory, "malformed ImagePositionPatient (0020,0032)") from None
    normal = np.reshape(image.GetDirection(), (3, 3))[:, 2]
    steps = np.diff(positions @ normal)
    # A gantry-tilted series steps sideways too; ITK's grid has no room for that and would
    # place every slice but the first off by the accumulated shift.
    sideways = np.linalg.norm(np.diff(positions, axis=0) - np.outer(steps, normal), axis=1)
    if len(sideways) and sideways.max() > _SPACING_RTOL * abs(float(np.median(steps))) + _SPACING_ATOL_MM:
        raise CTReadError(
            directory,
            f"slices are not stacked along their normal (gantry tilt?): each steps {sideways.max():.4g} mm "
            "sideways; resample the series onto an orthogonal grid first",
        )
    median = float(np.median(steps))
    worst = int(np.argmax(np.abs(steps - median)))
    if median <= 0 or abs(steps[worst] - median) > _SPACING_RTOL * median + _SPACING_ATOL_MM:
        raise CTReadError(
            directory,
            f"non-uniform slice spacing (missing or duplicate slices?): step {steps[worst]:.4g} mm "
            f"between slices {worst} and {worst + 1}, median step {median:.4g} mm",
        )


def series_uids_in(directory: Path) -> tuple[str, ...]:
    """SeriesInstanceUIDs of the DICOM files directly inside ``directory`` (not recursive)."""
    try:
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory)))
    except RuntimeError as error:
        raise CTReadError(directory, f"cannot scan for DICOM files: {itk_reason(error)}") from error


def read_dicom_series(directory: Path) -> CTVolume:
    """Read the single DICOM series in ``directory`` as int16 HU with ITK geometry."""
    directory = Path(directory)
    files = [p for p in directory.iterdir() if p.is_file()]
    if not files:
        subdirs = sum(1 for p in directory.iterdir() if p.is_dir())
        hint = (
            f" (only {subdirs} subdirectories; a series is read from one directory)" if subdirs else ""
        )
        raise CTReadError(directory, f"empty DICOM directory: it contains no files{hint}")
    uids = series_uids_in(directory)
    if not uids:
        raise CTReadError(
            directory, f"no DICOM series found among its {len(files)} file(s)"
        )
    if len(uids) > 1:
        raise CTReadError(
            directory,
            f"the directory mixes {len(uids)} DICOM series, expected one: {', '.join(sorted(uids))}",
        )
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), uids[0])
    _check_nothing_dropped(directory, files, names)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise CTReadError(
            directory, f"cannot read DICOM series {uids[0]}: {itk_reason(error)}"
        ) from error
    check_3d(directory, image.GetSize())
    _check_uniform_slices(directory, reader, image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CTReadError(
            directory,
            f"unsupported pixel type: {image.GetNumberOfComponentsPerPixel()} components per voxel",
        )
    series_uid = uids[0]
    if reader.HasMetaDataKey(0, _SERIES_UID_TAG):
        # GDCM's series id is the tag value; read it back to drop DICOM's space/NUL padding.
        series_uid = reader.GetMetaData(0, _SERIES_UID_TAG).strip(" \x00") or series_uid
    try:
        geometry = Geometry(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    except ValueError as error:
        raise CTReadError(directory, f"unusable geometry: {error}") from error
    hu = to_int16_hu(directory, sitk.GetArrayFromImage(image))
    return CTVolume(hu=hu, geometry=geometry, source=directory, series_uid=series_uid,
                    slice_files=tuple(Path(name) for name in names))  # the order ITK stacked them in
