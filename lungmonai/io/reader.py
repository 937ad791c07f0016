"""``read_ct``: one entry point for every CT format the pipeline meets.

Dispatch is on the path alone (directory, or file extension) so that the error for a wrong
path is immediate and names the path, before any format-specific parsing.
"""

from __future__ import annotations

from pathlib import Path

from lungmonai.io.errors import CTReadError
from lungmonai.io.metaimage import read_metaimage
from lungmonai.io.volume import CTVolume

SUPPORTED = ".mhd (.raw/.zraw), .mha, .nii, .nii.gz, or a directory of DICOM files"


def read_ct(path: str | Path) -> CTVolume:
    """Read a CT scan as int16 HU (index, row, col) with ITK geometry.

    Raises :class:`CTReadError` (a ``ValueError``) whose message starts with ``path``.
    """
    if not str(path).strip():  # Path("") is the working directory: an unset config value would read it
        raise CTReadError("", "no CT given (an empty path); pass the CT's file or DICOM directory")
    path = Path(path)
    # DICOM and NIfTI geometry come through SimpleITK, imported with their readers only when a CT
    # of that format is read: the embedded dataset (MetaImage) trains and analyses without it.
    if path.is_dir():
        from lungmonai.io.dicom import read_dicom_series

        return read_dicom_series(path)
    if not path.exists():
        raise CTReadError(path, "file not found")
    name = path.name.lower()
    if name.endswith((".mhd", ".mha")):
        return read_metaimage(path)
    if name.endswith((".nii", ".nii.gz")):
        from lungmonai.io.nifti import read_nifti

        return read_nifti(path)
    extension = "".join(path.suffixes) or "(none)"
    raise CTReadError(path, f"unknown extension {extension}; expected {SUPPORTED}")
