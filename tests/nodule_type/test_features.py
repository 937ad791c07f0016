"""Density features on spheres of known density."""

from __future__ import annotations

import numpy as np
import pytest

from lungmonai.nodule_type.features import FEATURES, nodule_features
from tests.nodule_type.spheres import CALCIUM_HU, GGO_HU, SOLID_HU, SPACING, sphere_nodule


def feats(kind: str, radius: float = 8.0, **kw) -> dict[str, float]:
    hu, mask = sphere_nodule(kind, radius, **kw)
    return dict(zip(FEATURES, nodule_features(hu, mask, SPACING)))


def test_solid_sphere_is_solid_throughout() -> None:
    f = feats("solid")
    assert f["solid_fraction"] == 1.0 and f["calcific_fraction"] == 0.0
    for name in ("mean_hu", "p10_hu", "p90_hu", "core_mean_hu", "rim_mean_hu"):
        assert f[name] == pytest.approx(SOLID_HU)


def test_ground_glass_sphere_has_no_solid_voxel() -> None:
    f = feats("ground-glass")
    assert f["solid_fraction"] == 0.0 and f["calcific_fraction"] == 0.0
    for name in ("mean_hu", "p10_hu", "p90_hu", "core_mean_hu", "rim_mean_hu"):
        assert f[name] == pytest.approx(GGO_HU)


def test_part_solid_sphere_has_a_solid_core_in_a_hazy_rim() -> None:
    f = feats("part-solid", core_fraction=0.6)
    # Solid inside 0.6 of the radius: about 0.6^3 of the volume.
    assert 0.15 < f["solid_fraction"] < 0.3
    assert f["core_mean_hu"] == pytest.approx(SOLID_HU)  # the core (inner half of the depth) is all solid
    assert GGO_HU < f["rim_mean_hu"] < -450.0
    assert f["p10_hu"] == pytest.approx(GGO_HU) and f["p90_hu"] == pytest.approx(SOLID_HU)


def test_calcified_centre_counts_as_calcific_not_as_more_nodule() -> None:
    f = feats("solid", calcified=True)
    assert 0.08 < f["calcific_fraction"] < 0.2  # inner half of the radius: 1/8 of the volume
    assert f["p90_hu"] == pytest.approx(CALCIUM_HU) and f["core_mean_hu"] > 300.0
    assert feats("solid")["calcific_fraction"] == 0.0


def test_volume_and_independence_of_the_crop() -> None:
    hu, mask = sphere_nodule("part-solid", 6.0, realistic=True)
    f = nodule_features(hu, mask, SPACING)
    assert f[FEATURES.index("log10_volume_mm3")] == pytest.approx(np.log10(mask.sum() * np.prod(SPACING)))
    # Measured in a crop or in a larger array (the whole CT), the numbers are the same.
    big_hu = np.pad(hu, 7, constant_values=-850.0)
    big_mask = np.pad(mask, 7)
    np.testing.assert_allclose(nodule_features(big_hu, big_mask, SPACING), f)
    # int16 HU (as the working grid holds them) give the same features as their float values.
    np.testing.assert_allclose(nodule_features(np.rint(hu).astype(np.int16), mask, SPACING),
                               nodule_features(np.rint(hu), mask, SPACING))


def test_values_are_clipped_to_the_window() -> None:
    hu, mask = sphere_nodule("solid", 5.0)
    hot = hu.copy()
    hot[mask] = 3000.0
    f = dict(zip(FEATURES, nodule_features(hot, mask, SPACING)))
    assert f["mean_hu"] == 1000.0 and f["calcific_fraction"] == 1.0


def test_bad_inputs_are_refused_with_a_clear_message() -> None:
    hu, mask = sphere_nodule("solid", 5.0)
    with pytest.raises(ValueError, match="empty"):
        nodule_features(hu, np.zeros_like(mask), SPACING)
    with pytest.raises(ValueError, match="same voxels"):
        nodule_features(hu[1:], mask, SPACING)
    with pytest.raises(TypeError, match="boolean"):
        nodule_features(hu, mask.astype(np.uint8), SPACING)
    with pytest.raises(ValueError, match="spacing_irc"):
        nodule_features(hu, mask, (1.5, 1.5))
    with pytest.raises(ValueError, match="spacing_irc"):
        nodule_features(hu, mask, (0.0, 1.5, 1.5))
    bad = hu.copy()
    bad[mask] = np.nan
    with pytest.raises(ValueError, match="finite"):
        nodule_features(bad, mask, SPACING)
