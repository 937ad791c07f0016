"""NIfTI (.nii / .nii.gz) reader.

Geometry comes from SimpleITK's NiftiImageIO (header only): NIfTI stores a RAS affine picked
from the qform or the sform by rules that differ between tools, and ITK's choice, converted to
LPS, is what SimpleITK, MONAI's ITKReader and the LUNA16 evaluation all use.

Voxels come from nibabel, not ITK: ITK's bundled nifticlib silently replaces NaN/inf with 0
(0 HU is water, a plausible-looking lie) and reads a truncated file without complaint, whereas
nibabel hands back the values as stored, scaled by scl_slope/scl_inter, and fails on short files.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from lungmonai.io.discover import output_stem
from lungmonai.io.errors import CTReadError, check_3d, itk_reason, to_int16_hu
from lungmonai.io.volume import CTVolume, Geometry


def _itk_geometry(path: Path) -> tuple[tuple[int, ...], Geometry]:
    """Size (x, y, z) and ITK geometry from the header, without reading voxels."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise CTReadError(path, f"not a readable NIfTI file: {itk_reason(error)}") from error
    size = tuple(int(s) for s in reader.GetSize())
    check_3d(path, size)
    if reader.GetNumberOfComponents() != 1:
        raise CTReadError(
            path, f"unsupported pixel type: {reader.GetNumberOfComponents()} components per voxel"
        )
    try:
        geometry = Geometry(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())
    except ValueError as error:
        raise CTReadError(path, f"unusable geometry: {error}") from error
    return size, geometry


def _voxels_ijk(path: Path) -> np.ndarray:
    """Scaled voxels in NIfTI (i, j, k) = (x, y, z) order."""
    try:
        image = nib.load(str(path))
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as error:
        raise CTReadError(path, f"cannot read voxel data, truncated or corrupt: {error}") from error


def read_nifti(path: Path) -> CTVolume:
    """Read a 3D scalar NIfTI CT (scl_slope/scl_inter applied) as int16 HU."""
    path = Path(path)
    size_xyz, geometry = _itk_geometry(path)
    voxels = _voxels_ijk(path)
    while voxels.ndim > 3 and voxels.shape[-1] == 1:  # 4D with one time point, as ITK reads it
        voxels = voxels[..., 0]
    if voxels.shape != size_xyz:
        raise CTReadError(
            path, f"voxel array of shape {voxels.shape} does not match header size {size_xyz}"
        )
    # (x, y, z) -> (z, y, x); NIfTI arrays are x-fastest, so the transpose is C-contiguous.
    hu = to_int16_hu(path, np.ascontiguousarray(voxels.T))
    return CTVolume(hu=hu, geometry=geometry, source=path, series_uid=output_stem(path))
