"""The one in-memory CT type every reader returns and every stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Voxel grid to patient space (mm), in ITK's convention.

    ``xyz = origin_xyz + direction @ (spacing_xyz * index_xyz)`` where ``index_xyz`` is the
    (col, row, index) voxel index, i.e. the reversed ``irc``.
    """

    origin_xyz: np.ndarray
    spacing_xyz: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        origin = np.asarray(self.origin_xyz, dtype=np.float64).reshape(3)
        spacing = np.asarray(self.spacing_xyz, dtype=np.float64).reshape(3)
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(origin)) or not np.all(np.isfinite(direction)):
            raise ValueError(f"geometry must be finite: origin={origin}, direction={direction}")
        if not np.all(spacing > 0):
            raise ValueError(f"voxel spacing must be positive, got {spacing}")
        if abs(np.linalg.det(direction)) < 1e-6:
            raise ValueError(f"direction matrix is singular: {direction.tolist()}")
        object.__setattr__(self, "origin_xyz", origin)
        object.__setattr__(self, "spacing_xyz", spacing)
        object.__setattr__(self, "direction", direction)

    @property
    def spacing_irc(self) -> np.ndarray:
        return self.spacing_xyz[::-1].copy()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return (
            np.allclose(self.origin_xyz, other.origin_xyz)
            and np.allclose(self.spacing_xyz, other.spacing_xyz)
            and np.allclose(self.direction, other.direction)
        )


@dataclass
class CTVolume:
    """A CT scan: int16 Hounsfield units in (index, row, col) order plus its geometry."""

    hu: np.ndarray
    geometry: Geometry
    source: Path
    series_uid: str
    # A DICOM series' slice files, ``slice_files[k]`` holding ``hu[k]``: what DICOM outputs refer
    # to. Empty for other formats, and for a volume re-laid out or resampled from the one read
    # (``to_lps``, ``to_grid`` make a new CTVolume without it), whose slices are no longer the files'.
    slice_files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"{self.source}: expected a 3D volume, got shape {self.hu.shape}")
        if self.hu.dtype != np.int16:
            raise TypeError(f"{self.source}: HU voxels must be int16, got {self.hu.dtype}")

    @property
    def shape_irc(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]
