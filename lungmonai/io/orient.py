"""Bring a CT to the array layout the networks were trained on: LUNA16's, axial slices first.

LUNA16's ``.mhd`` files (and most axial DICOM series) store index = superior, row = posterior,
col = left, i.e. an identity direction in ITK's LPS patient space. NIfTI files and some DICOM
series store the same anatomy flipped (feet first, prone) or with the axes in another order
(a sagittal or coronal stack). The segmenter reads axial slices along the first array axis, so
such a CT must be re-laid out first; only axis order and direction change, not one voxel
value, and patient coordinates (xyz) stay exactly what they were.
"""

from __future__ import annotations

import numpy as np

from lungmonai.io.volume import CTVolume, Geometry


def _layout(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(patient axis of each ITK axis, its sign), or None when already LUNA16's or too oblique."""
    axis_of = np.argmax(np.abs(direction), axis=0)  # patient axis (x, y, z) of each ITK axis
    if sorted(axis_of.tolist()) != [0, 1, 2]:
        return None
    signs = np.sign(direction[axis_of, np.arange(3)])
    if np.array_equal(axis_of, np.arange(3)) and np.all(signs > 0):
        return None
    return axis_of, signs


def _flip_axes(signs: np.ndarray) -> tuple[int, ...]:
    return tuple(2 - j for j in range(3) if signs[j] < 0)  # ITK axis j is numpy axis 2 - j


def _transpose(axis_of: np.ndarray) -> list[int]:
    order = np.argsort(axis_of)  # new ITK axis k is old ITK axis order[k]
    return [int(2 - order[2 - a]) for a in range(3)]


def to_lps(ct: CTVolume) -> CTVolume:
    """``ct`` with its axes permuted and flipped so the direction is closest to identity.

    Returned as is when it already is (LUNA16's files) or when the direction is too oblique to
    give each array axis its own patient axis.
    """
    hu, geometry = array_to_lps(ct.hu, ct.geometry)
    if hu is ct.hu:
        return ct
    return CTVolume(hu, geometry, ct.source, ct.series_uid)


def array_to_lps(array: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
    """``to_lps`` for any array on a CT's grid (a label volume), with the grid's new geometry;
    ``array`` itself when there is nothing to change."""
    layout = _layout(geometry.direction)
    if layout is None:
        return array, geometry
    axis_of, signs = layout
    direction, spacing = geometry.direction, geometry.spacing_xyz
    origin = geometry.origin_xyz.astype(np.float64).copy()
    size_xyz = array.shape[::-1]
    for j in range(3):
        if signs[j] < 0:
            origin = origin + direction[:, j] * spacing[j] * (size_xyz[j] - 1)
    moved = np.ascontiguousarray(np.transpose(np.flip(array, axis=_flip_axes(signs)), _transpose(axis_of)))
    order = np.argsort(axis_of)
    return moved, Geometry(origin, spacing[order], (direction * signs)[:, order])


def from_lps(array: np.ndarray, geometry: Geometry) -> np.ndarray:
    """An array on ``to_lps``'s grid of a CT with ``geometry``, put back on that CT's own grid
    (results written where the user's viewer overlays them on the file as given)."""
    layout = _layout(geometry.direction)
    if layout is None:
        return array
    axis_of, signs = layout
    back = np.transpose(array, np.argsort(_transpose(axis_of)))
    return np.ascontiguousarray(np.flip(back, axis=_flip_axes(signs)))
