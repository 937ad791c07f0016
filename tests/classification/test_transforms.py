"""Candidate crops from the cache (training) and from an in-memory CT (inference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungmonai.cache import CropCache, extract_crop
from lungmonai.classification import CropCandidated, LoadCandidateCropd
from lungmonai.classification.data import candidate_items
from lungmonai.geometry import xyz_to_irc, irc_to_xyz
from lungmonai.io import read_ct
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.tables.prepare import prepare_dataset
from tests.helpers import write_luna_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    data = write_luna_dataset(root, n_series=2, nodules_per_series=(1, 1), negatives_per_series=2,
                              include_missing_series=False, noise_hu=200)
    prepare_dataset(root, workers=1)
    return data, root / "prepared"


def test_load_candidate_crop_equals_the_cache(prepared):
    _, out = prepared
    items = candidate_items(out, ["train", "val", "test"])
    transform = LoadCandidateCropd(keys=["image", "copy"], cache_dir=out / "cache")
    cache = CropCache(out / "cache")
    for item in items:
        result = transform(item)
        assert result["image"].shape == (1, 32, 48, 48) and result["image"].dtype == np.float32
        np.testing.assert_array_equal(result["image"][0], cache.read_crop(item["series_uid"], item["series_row"]))
        np.testing.assert_array_equal(result["copy"], result["image"])
        assert result["label"] == item["label"]  # other keys pass through
        assert "image" not in item  # the input dict is not modified


def test_load_candidate_crop_matches_cropping_the_ct(prepared):
    """The two paths the docstring promises agree: cached crop == crop cut from the CT."""
    data, out = prepared
    items = candidate_items(out, ["train", "val", "test"])
    load = LoadCandidateCropd(keys="image", cache_dir=out / "cache")
    cut = CropCandidated(keys="image")
    cts = {uid: read_ct(path) for uid, path in data.series.items()}
    for item in items:
        from_ct = cut({"ct": cts[item["series_uid"]], "center_xyz": item["center_xyz"]})["image"]
        np.testing.assert_array_equal(load(item)["image"], from_ct)


def test_load_candidate_crop_wrong_row_raises(prepared):
    _, out = prepared
    item = candidate_items(out, "train")[0]
    with pytest.raises(IndexError):
        LoadCandidateCropd(keys="image", cache_dir=out / "cache")({**item, "series_row": 99})


def _ct() -> CTVolume:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1500, 2500, size=(20, 30, 26)).astype(np.int16)
    geometry = Geometry(np.array([-100.0, 50.0, -300.0]), np.array([0.7, 0.8, 2.5]))
    return CTVolume(hu=hu, geometry=geometry, source=Path("mem"), series_uid="1.2.3")


@pytest.mark.parametrize("irc", [(10.2, 14.6, 13.4), (0.0, 2.0, 25.0), (19.0, 29.0, 0.0), (-3.0, 40.0, 5.0)])
def test_crop_candidate_equals_extract_crop(irc):
    ct = _ct()
    center_xyz = irc_to_xyz(np.array(irc), ct.geometry)
    shape = (8, 16, 12)
    out = CropCandidated(keys="image", crop_shape=shape)({"ct": ct, "center_xyz": list(center_xyz)})
    image = out["image"]
    assert image.shape == (1, *shape) and image.dtype == np.float32
    expected = np.clip(extract_crop(ct.hu, xyz_to_irc(center_xyz, ct.geometry), shape, pad_value=-1000), -1000, 1000)
    np.testing.assert_array_equal(image[0], expected)
    assert image.min() >= -1000 and image.max() <= 1000
    assert out["ct"] is ct


def test_crop_candidate_pads_with_air_at_borders():
    ct = _ct()
    ct.hu[:] = 300
    corner = irc_to_xyz(np.array([0.0, 0.0, 0.0]), ct.geometry)
    image = CropCandidated(keys="image", crop_shape=(8, 16, 12))({"ct": ct, "center_xyz": corner})["image"][0]
    # crop starts at -shape//2: the first half along each axis lies outside the volume
    assert np.all(image[:4] == -1000) and np.all(image[:, :8] == -1000) and np.all(image[:, :, :6] == -1000)
    assert np.all(image[4:, 8:, 6:] == 300)  # never shifted: the centre voxel is at shape//2
    far = CropCandidated(keys="image", crop_shape=(8, 16, 12))({"ct": ct, "center_xyz": corner - 1000.0})
    assert np.all(far["image"] == -1000)
