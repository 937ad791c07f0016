"""Where a CT lies in patient space, read from its header, and which centres fall outside it.

A centre outside its CT is not a nodule anyone can see: cropped there, it is an all-air
(padding) crop, which trains the classifier on nothing and scores a point that is not in the
scan. The extent is the voxels' own patient-space box (each voxel reaches half a voxel past
its centre), which resampling onto the working grid does not change, so the check is made
once, on the header, before any voxel is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungmonai.geometry import xyz_to_irc_continuous
from lungmonai.io.volume import CTVolume, Geometry

_TOLERANCE_VOXELS = 1e-6  # float noise of a centre written exactly on the outer voxel edge


@dataclass(frozen=True)
class Extent:
    """A CT's voxel grid: ``shape_irc`` voxels placed by ``geometry``."""

    shape_irc: tuple[int, int, int]
    geometry: Geometry

    @classmethod
    def of(cls, ct: CTVolume) -> "Extent":
        return cls(ct.shape_irc, ct.geometry)

    def corners_xyz(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest patient xyz (mm) of the voxels' box, for a message a person reads."""
        from lungmonai.geometry import irc_to_xyz

        edges = np.array([[-0.5, n - 0.5] for n in self.shape_irc])
        corners = np.array(np.meshgrid(*edges, indexing="ij")).reshape(3, -1).T
        xyz = irc_to_xyz(corners, self.geometry)
        return xyz.min(axis=0), xyz.max(axis=0)

    def describe(self) -> str:
        low, high = self.corners_xyz()
        return "x {:.1f}..{:.1f}, y {:.1f}..{:.1f}, z {:.1f}..{:.1f} mm".format(
            *(v for pair in zip(low, high) for v in pair))


def inside(centers_xyz: np.ndarray, extent: Extent) -> np.ndarray:
    """(N,) bool: which patient-mm centres lie within the CT's voxels (edges included)."""
    centers = np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)
    if not len(centers):
        return np.zeros(0, dtype=bool)
    irc = xyz_to_irc_continuous(centers, extent.geometry)
    upper = np.asarray(extent.shape_irc, dtype=np.float64) - 0.5
    finite = np.isfinite(irc).all(axis=1)
    within = (irc >= -0.5 - _TOLERANCE_VOXELS) & (irc <= upper + _TOLERANCE_VOXELS)
    return finite & within.all(axis=1)


def read_extent(path: str | Path) -> Extent:
    """The extent of the CT at ``path``: from the header alone for MetaImage and NIfTI, from the
    series itself for DICOM. Raises :class:`~lungmonai.io.errors.CTReadError` as ``read_ct`` does."""
    path = Path(path)
    name = path.name.lower()
    if path.is_file() and name.endswith((".mhd", ".mha")):
        from lungmonai.io.metaimage import parse_header

        header = parse_header(path)
        return Extent(tuple(int(s) for s in header.shape_xyz[::-1]), header.geometry)  # type: ignore[arg-type]
    if path.is_file() and name.endswith((".nii", ".nii.gz")):
        from lungmonai.io.nifti import _itk_geometry

        size_xyz, geometry = _itk_geometry(path)
        return Extent(tuple(int(s) for s in size_xyz[::-1]), geometry)  # type: ignore[arg-type]
    from lungmonai.io.reader import read_ct

    return Extent.of(read_ct(path))
