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


def to_lps(ct: CTVolume) -> CTVolume:
    """``ct`` with its axes permuted and flipped so the direction is closest to identity.

    Returned as is when it already is (LUNA16's files) or when the direction is too oblique to
    give each array axis its own patient axis.
    """
    direction = ct.geometry.direction
    axis_of = np.argmax(np.abs(direction), axis=0)  # patient axis (x, y, z) of each ITK axis
    if sorted(axis_of.tolist()) != [0, 1, 2]:
        return ct
    signs = np.sign(direction[axis_of, np.arange(3)])
    if np.array_equal(axis_of, np.arange(3)) and np.all(signs > 0):
        return ct
    spacing = ct.geometry.spacing_xyz
    origin = ct.geometry.origin_xyz.astype(np.float64).copy()
    hu = ct.hu
    size_xyz = hu.shape[::-1]
    for j in range(3):  # ITK axis j is numpy axis 2 - j
        if signs[j] < 0:
            origin = origin + direction[:, j] * spacing[j] * (size_xyz[j] - 1)
            hu = np.flip(hu, axis=2 - j)
    order = np.argsort(axis_of)  # new ITK axis k is old ITK axis order[k]
    hu = np.ascontiguousarray(np.transpose(hu, [2 - order[2 - a] for a in range(3)]))
    geometry = Geometry(origin, spacing[order], (direction * signs)[:, order])
    return CTVolume(hu, geometry, ct.source, ct.series_uid)
