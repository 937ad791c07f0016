"""A tiny prepared dataset with contour masks, shared by the segmentation tests of a module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.helpers import NODULE_HU, write_luna_dataset


def write_contour_masks(root: Path) -> Path:
    """``root/masks/<uid>.mhd``: the painted nodule spheres as label 1, on each CT's grid."""
    masks = root / "masks"
    masks.mkdir(exist_ok=True)
    for path in sorted(root.glob("subset*/*.mhd")):
        image = sitk.ReadImage(str(path))
        labels = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) == NODULE_HU).astype(np.uint8))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, str(masks / path.name), True)
    return masks


@pytest.fixture(scope="module")
def seg_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 series of 24x40x40 (nodules 2, 1, 1, 0), prepared, with contour masks."""
    from lungmonai.tables.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("seg_tiny")
    write_luna_dataset(root, n_series=4, shape_irc=(24, 40, 40), nodules_per_series=(2, 1, 1, 0), negatives_per_series=4)
    write_contour_masks(root)
    prepare_dataset(root, workers=1)
    return root
