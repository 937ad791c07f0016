"""Label cache built once per series, data lists, and the training windows the bundle feeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import ConfigParser

from lungmonai.segmentation.data import (
    GROUPS,
    group_of,
    nodule_list,
    prepare_labels,
    sampling_weights,
    slice_items,
    split_series,
    training_items,
)
from lungmonai.segmentation.label_cache import ENTRY_FILE, LabelCache, label_params

REPO = Path(__file__).resolve().parents[2]
ALL = ["train", "val", "test"]


def _prepared(root: Path) -> Path:
    return root / "prepared"


def test_contours_and_box_rule_agree_on_spheres_and_are_built_once(seg_dataset: Path, tmp_path: Path) -> None:
    labels_dir = tmp_path / "labels"
    contours = prepare_labels(_prepared(seg_dataset), ALL, labels_dir, label_params("contours", str(seg_dataset / "masks")))
    boxes = prepare_labels(_prepared(seg_dataset), ALL, labels_dir, label_params("annotations"))
    total = 0
    for uid in split_series(_prepared(seg_dataset), ALL):
        a, b = np.asarray(contours.read_labels(uid)), np.asarray(boxes.read_labels(uid))
        assert a.dtype == np.uint8 and a.shape == (24, 40, 40)
        assert np.array_equal(a, b)  # dense spheres in -850 HU: the book's rule finds them exactly
        total += int(a.sum())
    assert total > 0
    nodules = {uid: np.zeros((0, 3)) for uid in split_series(_prepared(seg_dataset), ALL)}
    again = LabelCache(_prepared(seg_dataset) / "cache", labels_dir, label_params("contours", str(seg_dataset / "masks")))
    assert again.ensure(nodules) == {"built": 0, "fresh": 4}


def test_a_changed_mask_file_or_a_missing_sidecar_means_rebuild(seg_dataset: Path, tmp_path: Path) -> None:
    params = label_params("contours", str(seg_dataset / "masks"))
    cache = prepare_labels(_prepared(seg_dataset), ALL, tmp_path, params)
    uid = split_series(_prepared(seg_dataset), ALL)[0]
    no_nodules = np.zeros((0, 3))
    assert cache.is_fresh(uid, no_nodules)
    mask_raw = next((seg_dataset / "masks").glob(f"{uid}.*raw"))
    stat = mask_raw.stat()
    os.utime(mask_raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert not cache.is_fresh(uid, no_nodules)
    (cache.directory(uid) / ENTRY_FILE).unlink()
    fresh_reader = LabelCache(_prepared(seg_dataset) / "cache", tmp_path, params)
    with pytest.raises(LookupError):
        fresh_reader.read_labels(uid)
    assert fresh_reader.ensure({uid: no_nodules}) == {"built": 1, "fresh": 0}


def test_annotation_labels_key_on_the_nodule_centres(seg_dataset: Path, tmp_path: Path) -> None:
    cache = prepare_labels(_prepared(seg_dataset), ALL, tmp_path, label_params("annotations"))
    uid = split_series(_prepared(seg_dataset), ALL)[0]
    assert not cache.is_fresh(uid, np.array([[1.0, 2.0, 3.0]]))


def test_contours_missing_for_a_series_is_an_error_naming_the_way_out(seg_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotations"):
        prepare_labels(_prepared(seg_dataset), ALL, tmp_path, label_params("contours", str(tmp_path / "none")))


def test_data_lists(seg_dataset: Path, tmp_path: Path) -> None:
    prepared = _prepared(seg_dataset)
    cache = prepare_labels(prepared, ALL, tmp_path, label_params("contours", str(seg_dataset / "masks")))
    items = training_items(prepared, ALL, cache)
    groups = np.array(group_of(items))
    assert set(groups.tolist()) == {0, 1, 2} and (groups == GROUPS.index("random")).sum() == 4
    assert {tuple(sorted(i)) for i in items} == {("col", "height", "kind", "row", "series_uid", "slice", "width")}
    assert len(slice_items(prepared, ALL)) == 4 * 24  # these CTs are all lung: the box is the volume
    nodules = nodule_list(prepared, ALL)
    assert len(nodules) == 4 and all(n["radius_mm"] > 0 for n in nodules)


def test_balanced_weights_give_every_nodule_the_same_share(seg_dataset: Path, tmp_path: Path) -> None:
    prepared = _prepared(seg_dataset)
    cache = prepare_labels(prepared, ALL, tmp_path, label_params("contours", str(seg_dataset / "masks")))
    items = training_items(prepared, ALL, cache)
    groups = np.array(group_of(items))
    nodule = groups == GROUPS.index("nodule")
    balanced = np.array(sampling_weights(items, cache, 1.0))
    assert np.all(balanced[~nodule] == 1.0)
    assert np.any(balanced[nodule] < 1.0)  # a nodule crossing several slices is drawn less per slice
    # the summed weight of each nodule's windows is 1: one share per nodule, whatever its size,
    # counted here as the label volume's 3-D components
    from scipy import ndimage

    per_series: dict[str, float] = {}
    for item, w in zip(np.array(items)[nodule], balanced[nodule]):
        per_series[item["series_uid"]] = per_series.get(item["series_uid"], 0.0) + w
    for uid, total in per_series.items():
        assert total == pytest.approx(ndimage.label(np.asarray(cache.read_labels(uid)))[1])
    assert np.all(np.array(sampling_weights(items, cache, 0.0)) == 1.0)
    with pytest.raises(ValueError, match="nodule_balance"):
        sampling_weights(items, cache, 1.5)


def _parser(seg_dataset: Path, tmp_path: Path, **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/nodule_seg/configs/train.json"))
    parser.update({"dataset_dir": str(seg_dataset), "bundle_root": str(tmp_path), "num_workers": 0,
                   "train_parts": ALL, **overrides})
    return parser


def test_training_batches_become_64px_crops_of_seven_slices_with_the_configured_share(seg_dataset: Path, tmp_path: Path) -> None:
    parser = _parser(seg_dataset, tmp_path, epoch_samples=96, batch_size=16, positive_share=0.5)
    torch.manual_seed(0)
    kinds, positives_with_label = [], []
    prepare = parser.get_parsed_content("train#trainer#prepare_batch")  # augments on the device
    for batch in parser.get_parsed_content("train#dataloader"):
        assert batch["image"].shape == (16, 7, 96, 96) and batch["label"].shape == (16, 1, 96, 96)
        image, label = prepare(batch, torch.device("cpu"))
        assert image.shape == (16, 7, 64, 64) and label.shape == (16, 1, 64, 64)
        assert set(torch.unique(label).tolist()) <= {0.0, 1.0}
        assert float(image.min()) >= -1.5 and float(image.max()) <= 1.5
        for kind, label in zip(batch["kind"], label):
            kinds.append(kind)
            if kind == "nodule":
                positives_with_label.append(bool(label.sum() > 0))
    share = kinds.count("nodule") / len(kinds)
    assert 0.3 < share < 0.7
    assert np.mean(positives_with_label) > 0.9  # the nodule stays inside the 64px crop


def test_validation_items_are_whole_slices_padded_to_the_unet_grid(seg_dataset: Path, tmp_path: Path) -> None:
    parser = _parser(seg_dataset, tmp_path, val_parts=["val"], train_parts=["train"], divisible=16)
    batch = next(iter(parser.get_parsed_content("validate#dataloader")))
    assert batch["image"].shape[1:] == (7, 48, 48) and batch["label"].shape[1:] == (1, 48, 48)
    assert torch.all(batch["image"][:, :, 40:] == -1.0)  # padding is air


def test_lung_boxes_of_ct_of_two_sizes_stack_into_one_batch() -> None:
    # On the working grid CTs differ in size; an evaluation batch may hold slices of two of them.
    from types import SimpleNamespace

    from monai.data import list_data_collate

    from lungmonai.segmentation.transforms import LoadSliceWindowd

    shapes = {"a": (5, 30, 41), "b": (5, 37, 33)}
    volumes = SimpleNamespace(read_volume=lambda uid: (np.full(shapes[uid], -800, np.int16), None))
    labels = SimpleNamespace(volumes=volumes, read_labels=lambda uid: np.zeros(shapes[uid], np.uint8))
    load = LoadSliceWindowd(labels, context=1, divisible=8)
    items = [{"series_uid": uid, "kind": "slice", "slice": 2, "row": 0, "col": 0, "height": 37, "width": 41} for uid in shapes]

    batch = list_data_collate([load(item) for item in items])

    assert tuple(batch["image"].shape) == (2, 3, 40, 48) and tuple(batch["label"].shape) == (2, 1, 40, 48)


def test_label_entries_store_only_the_nodules_box_and_read_the_same_windows(seg_dataset: Path, tmp_path: Path) -> None:
    from lungmonai.segmentation.labels import boxed_mask
    from lungmonai.segmentation.windows import read_label_patch, read_window

    cache = prepare_labels(_prepared(seg_dataset), ALL, tmp_path, label_params("contours", str(seg_dataset / "masks")))
    rng = np.random.default_rng(0)
    nodule_voxels = 0
    for uid in split_series(_prepared(seg_dataset), ALL):
        labels = cache.read_labels(uid)
        dense = np.asarray(labels)
        stored = np.load(cache.directory(uid) / "label.npy", allow_pickle=False)
        assert stored.size < dense.size / 4, "the label file holds the whole volume, not the nodules' box"
        assert stored.sum() == dense.sum()
        nodule_voxels += int(dense.sum())
        for _ in range(50):  # windows inside, across and outside the box and the volume
            index = int(rng.integers(dense.shape[0]))
            row0, col0 = (int(v) for v in rng.integers(-30, 50, size=2))
            size = tuple(int(v) for v in rng.integers(1, 48, size=2))
            expected = read_window(dense, index, row0, col0, size, context=0, pad_value=0)
            assert np.array_equal(read_label_patch(labels, index, row0, col0, size), expected)
    assert nodule_voxels > 0
    empty = boxed_mask(np.zeros((4, 5, 6), np.uint8))
    assert np.asarray(empty).shape == (4, 5, 6) and not read_label_patch(empty, 2, -3, -3, (8, 8)).any()


def test_volumes_cut_to_the_body_keep_labels_crops_and_coordinates_in_place(tmp_path: Path) -> None:
    import SimpleITK as sitk

    from lungmonai.cache import CropCache
    from lungmonai.geometry import xyz_to_irc
    from lungmonai.tables.prepare import prepare_dataset
    from tests.helpers import NODULE_HU, write_luna_dataset
    from tests.segmentation.conftest import write_contour_masks

    data = write_luna_dataset(tmp_path, n_series=3, shape_irc=(24, 40, 40), nodules_per_series=(2, 1, 0),
                              negatives_per_series=4)
    for path in data.series.values():  # the same chest inside a wider field of air, at the same place in mm
        image = sitk.ReadImage(str(path))
        hu = np.pad(sitk.GetArrayFromImage(image), ((0, 0), (20, 12), (12, 20)), constant_values=-1000)
        padded = sitk.GetImageFromArray(hu)
        padded.SetSpacing(image.GetSpacing())
        padded.SetOrigin(tuple(np.asarray(image.GetOrigin()) - np.array([12, 20, 0]) * np.asarray(image.GetSpacing())))
        sitk.WriteImage(padded, str(path), False)
    write_contour_masks(tmp_path)
    prepare_dataset(tmp_path, workers=1)
    volumes = CropCache(tmp_path / "prepared/cache")
    for uid in data.series:
        volume, _ = volumes.read_volume(uid)
        assert volume.shape == (24, 56, 56), "the air around the body was kept (or the body cut)"
    contours = prepare_labels(_prepared(tmp_path), ALL, tmp_path / "labels", label_params("contours", str(tmp_path / "masks")))
    boxes = prepare_labels(_prepared(tmp_path), ALL, tmp_path / "labels", label_params("annotations"))
    for uid in data.series:
        a, b = np.asarray(contours.read_labels(uid)), np.asarray(boxes.read_labels(uid))
        assert np.array_equal(a, b), "the radiologists' masks moved against the cut volume"
    for nodule in data.nodules:
        volume, geometry = volumes.read_volume(nodule.series_uid)
        assert volume[tuple(xyz_to_irc(np.asarray(nodule.center_xyz), geometry))] == NODULE_HU
        assert np.asarray(contours.read_labels(nodule.series_uid))[tuple(xyz_to_irc(np.asarray(nodule.center_xyz), geometry))] == 1
    table = pd.read_csv(tmp_path / "prepared/candidates.csv")
    for row in table[table["is_nodule"]].itertuples():
        assert volumes.read_crop(row.series_uid, row.series_row)[16, 24, 24] == NODULE_HU


def test_faint_nodules_are_drawn_more_often_by_their_share_of_faint_voxels() -> None:
    """Weights ``1 + w * share``: a ground-glass nodule's windows ``1 + w``, a solid one's 1,
    other items 1; combined with ``nodule_balance`` by product."""
    from types import SimpleNamespace

    from lungmonai.segmentation.labels import boxed_mask, positive_slices

    volume = np.full((10, 30, 30), -850.0, dtype=np.float32)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[2:4, 5:9, 5:9] = True
    volume[2:4, 5:9, 5:9] = -600.0  # ground glass, 2 slices
    mask[6, 20:24, 20:24] = True
    volume[6, 20:24, 20:24] = 30.0  # solid, 1 slice
    labels = SimpleNamespace(read_labels=lambda uid: boxed_mask(mask), volumes=SimpleNamespace(read_volume=lambda uid: (volume, None)))
    items = [{"series_uid": "s", "kind": "nodule", "slice": int(r[0])} for r in positive_slices(mask)]
    items.append({"series_uid": "s", "kind": "random", "slice": -1})
    weights = dict(zip((i["slice"] for i in items), sampling_weights(items, labels, 0.0, 3.0)))
    assert weights == {2: 4.0, 3: 4.0, 6: 1.0, -1: 1.0}
    balanced = dict(zip((i["slice"] for i in items), sampling_weights(items, labels, 1.0, 3.0)))
    assert balanced == {2: 2.0, 3: 2.0, 6: 1.0, -1: 1.0}
    assert sampling_weights(items, labels, 0.0) == [1.0] * len(items)
    with pytest.raises(ValueError, match="faint_weight"):
        sampling_weights(items, labels, 0.0, -1.0)


def test_validation_slices_cover_each_ct_lung_box_and_read_its_voxels(seg_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation runs the network where the pipeline does: the lung box of each CT, every
    slice read from the box's first row and column, padded to the largest box."""
    import lungmonai.segmentation.data as data
    from lungmonai.segmentation.transforms import LoadSliceWindowd

    prepared = _prepared(seg_dataset)
    uids = split_series(prepared, ALL)
    boxes = {uid: (slice(3 + k, 20), slice(5, 30 - k), slice(2 * k, 33)) for k, uid in enumerate(uids)}
    seen = iter(uids)  # slice_items finds each series' box in series order
    monkeypatch.setattr(data, "lung_box", lambda hu, spacing: boxes[next(seen)])
    items = slice_items(prepared, ALL)
    for uid, box in boxes.items():
        mine = [i for i in items if i["series_uid"] == uid]
        assert [i["slice"] for i in mine] == list(range(box[0].start, box[0].stop))
        assert {(i["row"], i["col"], i["height"], i["width"]) for i in mine} == {(box[1].start, box[2].start, 25, 33)}
    labels = prepare_labels(prepared, ALL, tmp_path, label_params("contours", str(seg_dataset / "masks")))
    item = next(i for i in items if i["series_uid"] == uids[1] and i["slice"] == 10)
    out = LoadSliceWindowd(labels, context=0, divisible=8)(item)
    volume = np.asarray(labels.volumes.read_volume(uids[1])[0])
    assert out["image"].shape == (1, 32, 40)  # 25 x 33 padded to the U-Net's multiple of 8
    np.testing.assert_array_equal(out["image"][0, :, :38], volume[10, 5:37, 2:40])  # the box and its padding
    assert np.all(out["image"][0, :, 38:] == -1000)  # beyond the CT: air


def test_a_cosine_schedule_warms_up_then_decays_to_zero_over_the_configured_epochs(seg_dataset: Path, tmp_path: Path) -> None:
    parser = _parser(seg_dataset, tmp_path, epoch_samples=64, batch_size=16, epochs=3, schedule="warmup_cosine", warmup_epochs=1)
    scheduler = parser.get_parsed_content("lr_scheduler")
    optimizer = parser.get_parsed_content("optimizer")
    lrs = []
    for _ in range(3 * 4):  # 3 epochs of 64 / 16 steps
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] < 1e-4 and max(lrs) == pytest.approx(1e-3, rel=0.05) and int(np.argmax(lrs)) == 4
    assert lrs[-1] < 0.1e-3  # decayed nearly to zero by the last step
    constant = _parser(seg_dataset, tmp_path).get_parsed_content("lr_scheduler")
    assert constant.get_last_lr() == [1e-3]
