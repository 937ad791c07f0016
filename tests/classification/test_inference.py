"""score_candidates_file: P(nodule) for the candidate centres of one CT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from monai.transforms import Compose, ScaleIntensityRanged

from lungmonai.classification import CropCandidated, LunaModel
from lungmonai.classification.inference import (
    FLIP_DIMS,
    OTHER_FLIPS,
    class1_probability,
    complete_flip_average,
    crop_images,
    predict_logits,
    read_centers,
    score_candidates_file,
)
from lungmonai.io import read_ct
from tests.helpers import write_luna_dataset

CROP = (16, 16, 16)  # small crops keep the CPU test fast; LunaModel takes any multiple of 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_luna_dataset(tmp_path_factory.mktemp("luna"), noise_hu=300)


def _transform():
    return Compose([
        CropCandidated(keys="image", crop_shape=CROP),
        ScaleIntensityRanged(keys="image", a_min=-1000, a_max=1000, b_min=-1, b_max=1, clip=True),
    ])


def _network():
    torch.manual_seed(0)
    return LunaModel(spatial_size=CROP)


def test_scores_the_rows_of_this_series_only(dataset, tmp_path):
    uid = dataset.series_uids[0]
    out_csv = tmp_path / "out" / "scored.csv"
    frame = score_candidates_file(dataset.series[uid], dataset.root / "candidates.csv", out_csv,
                                  _network(), _transform(), batch_size=3)
    source = pd.read_csv(dataset.root / "candidates.csv", dtype={"seriesuid": str})
    mine = source[source["seriesuid"] == uid].reset_index(drop=True)
    written = pd.read_csv(out_csv, dtype={"seriesuid": str})
    assert list(written.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "class", "p_nodule"]
    assert len(written) == len(mine) == len(frame) and len(mine) < len(source)
    assert (written["seriesuid"] == uid).all()
    np.testing.assert_allclose(written[["coordX", "coordY", "coordZ"]], mine[["coordX", "coordY", "coordZ"]])
    assert written["class"].tolist() == mine["class"].tolist()
    p = written["p_nodule"].to_numpy()
    assert np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    # each probability is the network's softmax for the crop at that row's centre
    network, transform, ct = _network().eval(), _transform(), read_ct(dataset.series[uid])
    with torch.no_grad():
        crops = torch.stack([torch.as_tensor(transform({"ct": ct, "center_xyz": c})["image"])
                             for c in mine[["coordX", "coordY", "coordZ"]].to_numpy()])
        expected = torch.softmax(network(crops), 1)[:, 1].numpy()
    np.testing.assert_allclose(p, expected, rtol=1e-4, atol=1e-6)
    assert [f.name for f in out_csv.parent.iterdir()] == ["scored.csv"]  # atomic: no temp left


def test_center_columns_and_no_seriesuid(dataset, tmp_path):
    uid = dataset.series_uids[1]
    centers = [n.center_xyz for n in dataset.nodules if n.series_uid == uid]
    csv = tmp_path / "centres.csv"
    pd.DataFrame(centers, columns=["center_x", "center_y", "center_z"]).to_csv(csv, index=False)
    frame = score_candidates_file(dataset.series[uid], csv, tmp_path / "o.csv", _network(), _transform(),
                                  column="p_malignant")
    assert list(frame.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "p_malignant"]
    assert (frame["seriesuid"] == uid).all() and len(frame) == len(centers)


def test_no_rows_for_this_series_writes_an_empty_table(dataset, tmp_path):
    uid = dataset.series_uids[0]
    csv = tmp_path / "other.csv"
    pd.DataFrame({"seriesuid": ["9.9.9"], "coordX": [1.0], "coordY": [2.0], "coordZ": [3.0]}).to_csv(csv, index=False)
    frame = score_candidates_file(dataset.series[uid], csv, tmp_path / "o.csv", _network(), _transform())
    assert len(frame) == 0 and "p_nodule" in frame.columns
    no_crops = crop_images(read_ct(dataset.series[uid]), np.zeros((0, 3)), _transform())
    assert len(class1_probability(predict_logits(_network(), no_crops))) == 0


def test_csv_without_coordinates_is_a_clear_error(tmp_path):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"seriesuid": ["1"], "x": [1.0], "y": [2.0], "z": [3.0]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="coordX,coordY,coordZ") as info:
        read_centers(csv)
    assert "bad.csv" in str(info.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_centers(tmp_path / "missing.csv")


def _first_centres(dataset, n: int):
    """The first series' CT, an untrained classifier, its crop transform and ``n`` candidate centres."""
    uid = dataset.series_uids[0]
    centres = pd.read_csv(dataset.root / "candidates.csv", dtype={"seriesuid": str})
    xyz = centres[centres["seriesuid"] == uid][["coordX", "coordY", "coordZ"]].to_numpy()[:n]
    return read_ct(dataset.series[uid]), _network().eval(), _transform(), xyz


def _probabilities(network, images, **kwargs):
    return class1_probability(predict_logits(network, images, **kwargs))


def test_flip_tta_averages_the_logits_of_the_eight_flips(dataset):
    ct, network, transform, centres = _first_centres(dataset, 4)
    images = crop_images(ct, centres, transform)
    plain = _probabilities(network, images, batch_size=3)
    tta = _probabilities(network, images, batch_size=3, flips=FLIP_DIMS)
    with torch.no_grad():
        crops = torch.stack([torch.as_tensor(transform({"ct": ct, "center_xyz": c})["image"]) for c in centres])
        logits = [network(crops.flip(d) if d else crops) for d in ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))]
        expected = torch.softmax(torch.stack(logits).mean(0), 1)[:, 1].numpy()
    np.testing.assert_allclose(tta, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(tta, plain, atol=1e-4)  # an untrained network is not flip-invariant


def test_bf16_scores_stay_close_to_float32(dataset):
    ct, network, transform, centres = _first_centres(dataset, 4)
    images = crop_images(ct, centres, transform)
    fp32 = _probabilities(network, images)
    bf16 = _probabilities(network, images, precision="bf16")
    assert bf16.dtype == fp32.dtype and np.abs(bf16 - fp32).max() < 0.02
    assert not np.array_equal(bf16, fp32)  # the network really ran in bfloat16
    with pytest.raises(ValueError, match="precision"):
        _probabilities(network, images, precision="fp16")


def test_add_flips_completes_the_unflipped_pass_to_the_eight_flip_average(dataset):
    ct, network, transform, centres = _first_centres(dataset, 3)
    images = crop_images(ct, centres, transform)
    plain = predict_logits(network, images)
    full = predict_logits(network, images, flips=FLIP_DIMS)
    others = predict_logits(network, images, flips=OTHER_FLIPS)
    torch.testing.assert_close(complete_flip_average(plain, others), full, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain, full, atol=1e-4)


def test_a_centre_outside_the_ct_is_an_error_naming_the_csv_and_its_line(dataset, tmp_path):
    uid = dataset.series_uids[0]
    source = pd.read_csv(dataset.root / "candidates.csv", dtype={"seriesuid": str})
    source.loc[len(source)] = [uid, 5000.0, 0.0, 0.0, 0]  # 5 m outside the CT
    csv = tmp_path / "candidates.csv"
    source.to_csv(csv, index=False)
    out_csv = tmp_path / "scored.csv"
    with pytest.raises(ValueError, match=rf"^{csv}: line {len(source) + 1}: centre \(5000.0, 0.0, 0.0\) mm lies outside the CT"):
        score_candidates_file(dataset.series[uid], csv, out_csv, _network(), _transform())
    assert not out_csv.exists()
    # the same row for another series is not this CT's business
    score_candidates_file(dataset.series[dataset.series_uids[1]], csv, out_csv, _network(), _transform())
    assert out_csv.is_file()
