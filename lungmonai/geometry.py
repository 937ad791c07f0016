"""Patient space (xyz, mm) <-> voxel index (irc = index, row, col).

Follows ITK exactly: ``xyz = origin + D @ (spacing * cri)`` with ``cri`` the voxel index in
(col, row, index) order. The inverse solves with ``D`` rather than multiplying by its
transpose or by ``inv(D)`` on the wrong side, which is only right for orthonormal or
symmetric matrices; ITK accepts any invertible direction, and so do we.
"""

from __future__ import annotations

import numpy as np

from lungmonai.io.volume import Geometry


def irc_to_xyz(irc: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Continuous voxel index (..., 3) in irc order to patient mm (..., 3) in xyz order."""
    irc = np.asarray(irc, dtype=np.float64)
    cri = irc[..., ::-1]
    scaled = cri * geometry.spacing_xyz
    return scaled @ geometry.direction.T + geometry.origin_xyz


def xyz_to_irc_continuous(xyz: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Patient mm (..., 3) to continuous voxel index (..., 3) in irc order."""
    xyz = np.asarray(xyz, dtype=np.float64)
    # ITK's order of operations: one precomputed inverse of direction * diag(spacing), then a
    # product. Solving and dividing instead differs in the last bit, which flips the rounding of
    # points on a voxel boundary (a different voxel from SimpleITK's for the same point).
    to_index = np.linalg.inv(geometry.direction * geometry.spacing_xyz)
    cri = (xyz - geometry.origin_xyz).reshape(-1, 3) @ to_index.T
    return cri[:, ::-1].reshape(xyz.shape)


def xyz_to_irc(xyz: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Patient mm to the nearest voxel index (int64, irc order), rounding as ITK does."""
    continuous = xyz_to_irc_continuous(xyz, geometry)
    # ITK rounds half away from zero towards +inf (floor(x + 0.5)), unlike numpy's banker's rounding.
    return np.floor(continuous + 0.5).astype(np.int64)
