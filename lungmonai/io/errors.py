"""The one error every CT reader raises, and the checks all readers share.

Every reader funnels its failures into :class:`CTReadError` so callers (data preparation,
cache builders, dask workers) can catch one type and log one line that starts with the
offending file. The shared checks live here too so that every format rejects 2D images and
out-of-range or non-finite voxels with the same wording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

INT16_MIN = int(np.iinfo(np.int16).min)
INT16_MAX = int(np.iinfo(np.int16).max)


class FileProblem(ValueError):
    """A problem with one file, worded for its user; the message is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # The default pickling replays ``args`` (the formatted message) into __init__, which
        # takes two arguments; errors raised in worker processes must survive the trip back.
        return (type(self), (self.path, self.problem))


class CTReadError(FileProblem):
    """A CT file or series could not be read."""


def check_3d(path: Path, shape_xyz: Sequence[int]) -> None:
    """Refuse anything that is not a true 3D volume.

    A single slice (a dimension of size 1) is a 2D image as far as the pipeline is concerned:
    3D crops and segmentation would silently pad it into nonsense.
    """
    shape = tuple(int(s) for s in shape_xyz)
    if len(shape) != 3:
        kind = "2D" if len(shape) == 2 else f"{len(shape)}D"
        raise CTReadError(path, f"{kind} image (size {list(shape)}), a 3D CT volume is required")
    if min(shape) < 2:
        raise CTReadError(
            path,
            f"2D image: size {list(shape)} (x, y, z) has a dimension of {min(shape)}; "
            "a single-slice volume cannot be used as 3D CT",
        )


def to_int16_hu(path: Path, voxels: np.ndarray) -> np.ndarray:
    """Convert voxels of any real dtype to int16 HU, refusing values that do not fit.

    Float data are rounded to the nearest integer (HU are integers on every scanner); NaN or
    inf, or values outside int16, are errors rather than silently wrapped or clipped, since a
    wrapped HU value turns air into bone.
    """
    if voxels.dtype == np.int16:  # native-order int16 only; big-endian falls through to astype
        return voxels
    if voxels.dtype.kind not in "biuf":
        raise CTReadError(path, f"unsupported voxel type {voxels.dtype}, expected real scalars")
    if voxels.dtype.kind == "f":
        finite = np.isfinite(voxels)
        if not finite.all():
            bad = np.argwhere(~finite)
            first = tuple(int(i) for i in bad[0])
            raise CTReadError(
                path,
                f"{len(bad)} voxel(s) are NaN or inf (first at index,row,col {first}: "
                f"{voxels[first]})",
            )
        voxels = np.rint(voxels)
    if voxels.size and not np.can_cast(voxels.dtype, np.int16, casting="safe"):
        low, high = voxels.min(), voxels.max()
        if low < INT16_MIN or high > INT16_MAX:
            raise CTReadError(
                path,
                f"voxel values span [{low}, {high}] ({voxels.dtype}), outside the int16 range "
                f"[{INT16_MIN}, {INT16_MAX}] of HU",
            )
    return voxels.astype(np.int16)


def itk_reason(error: Exception) -> str:
    """The informative last line of a (multi-line, source-path laden) ITK exception message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    reason = lines[-1]
    # "ITK ERROR: NiftiImageIO(0x55..): <reason>" -> "<reason>"
    if "):" in reason and reason.startswith("ITK ERROR"):
        reason = reason.split("):", 1)[1].strip()
    return reason
