"""Data lists for the segmentation bundle: what to read, never the voxels themselves.

Every item has the same keys, so items of different kinds collate into one batch:
``series_uid``, ``kind``, ``slice``/``row``/``col`` and ``height``/``width`` (-1 where the
kind leaves them open).

- ``nodule``: a window centred on a nodule component in one of its slices (from the label cache).
- ``random``: a window at a random slice and place of the series, drawn when loaded.
- ``candidate``: a window centred on a class-0 candidate (vessel bifurcations, scars: the
  places a segmenter is most tempted to mark).
- ``slice``: the lung box of one slice, as the pipeline segments it (validation and
  evaluation: Dice, recall and reach over every voxel the pipeline would see).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.cache.crops import CropCache
from lungmonai.data.prepared import require_prepared
from lungmonai.geometry import xyz_to_irc, xyz_to_irc_continuous
from lungmonai.segmentation.label_cache import LabelCache, LabelParams, series_nodules
from lungmonai.segmentation.labels import positive_slice_counts, positive_slice_faint_share
from lungmonai.segmentation.roi import lung_box
from lungmonai.tables.candidates import load_candidate_table
from lungmonai.tables.splits import load_split

GROUPS = ("nodule", "random", "candidate")


def split_series(prepared_dir: str | os.PathLike[str], parts: str | Sequence[str]) -> list[str]:
    """Series uids the split file puts in ``parts``, sorted."""
    prepared = require_prepared(prepared_dir)
    split = load_split(prepared / "split.json")
    wanted = [parts] if isinstance(parts, str) else list(parts)
    return sorted(uid for part in wanted for uid in split.series_in(part))


def _item(uid: str, kind: str, slice_: int = -1, row: int = -1, col: int = -1, height: int = -1, width: int = -1) -> dict[str, Any]:
    return {"series_uid": uid, "kind": kind, "slice": int(slice_), "row": int(row), "col": int(col),
            "height": int(height), "width": int(width)}


def prepare_labels(
    prepared_dir: str | os.PathLike[str],
    parts: str | Sequence[str],
    label_dir: str | os.PathLike[str],
    params: LabelParams,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LabelCache:
    """Build (once) the label volumes of the series in ``parts``; returns the cache reading them."""
    prepared = require_prepared(prepared_dir)
    table = load_candidate_table(prepared / "candidates.csv")
    cache = LabelCache(cache_dir or prepared / "cache", label_dir, params)
    cache.ensure(series_nodules(table, split_series(prepared, parts)), desc=f"label volumes ({params.label_source})")
    return cache


def training_items(
    prepared_dir: str | os.PathLike[str],
    parts: str | Sequence[str],
    labels: LabelCache,
    random_per_series: int = 1,
) -> list[dict[str, Any]]:
    """Items of the three training groups; ``group_of`` tells them apart for the sampler."""
    prepared = require_prepared(prepared_dir)
    series = split_series(prepared, parts)
    items: list[dict[str, Any]] = []
    for uid in series:
        items += [_item(uid, "nodule", *map(int, p)) for p in labels.read_positives(uid)]
        items += [_item(uid, "random") for _ in range(random_per_series)]
    table = load_candidate_table(prepared / "candidates.csv")
    negatives = table[~table["is_nodule"] & table["series_uid"].isin(series)]
    volumes = CropCache(labels.volumes.cache_dir)
    for uid, rows in negatives.groupby("series_uid"):
        volume, geometry = volumes.read_volume(uid)
        centers = xyz_to_irc(rows[["center_x", "center_y", "center_z"]].to_numpy(np.float64), geometry).reshape(-1, 3)
        inside = np.all((centers >= 0) & (centers < np.asarray(volume.shape)), axis=1)
        items += [_item(str(uid), "candidate", *map(int, c)) for c in centers[inside]]
    return items


def sampling_weights(
    items: Sequence[dict[str, Any]], labels: LabelCache, nodule_balance: float, faint_weight: float = 0.0
) -> list[float]:
    """Each item's weight within its sampler group: nodule windows
    ``slices ** -nodule_balance * (1 + faint_weight * faint_share)``, where
    ``slices`` is how many slices the item's nodule crosses and ``faint_share`` the share of
    its voxels below -300 HU in the image (:func:`positive_slice_faint_share`); every other
    item 1.

    ``nodule_balance`` 0 draws every nodule slice alike, so a large nodule is seen as often as
    all its slices together; 1 draws every nodule alike. Small nodules are the ones the
    segmentation misses: on the shipped weights' held-out set 26 of the 35 nodules no component
    reached were under 6 mm, while every nodule over 12 mm was reached.

    ``faint_weight`` draws faint nodules more often (ground glass, and small nodules that are
    mostly partial-volume rim): with the 1 mm weights, 5 of the 7 val nodules the segmentation
    never marked had a mean HU of -600 to -130, while nodules over half faint fill 15% of the
    training windows.
    """
    if not 0.0 <= float(nodule_balance) <= 1.0:
        raise ValueError(f"nodule_balance must be in [0, 1], got {nodule_balance}")
    if float(faint_weight) < 0.0:
        raise ValueError(f"faint_weight must be >= 0, got {faint_weight}")
    weights = np.ones(len(items), dtype=np.float64)
    by_series: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        if item["kind"] == "nodule":
            by_series.setdefault(item["series_uid"], []).append(k)
    for uid, positions in by_series.items():
        mask = labels.read_labels(uid)
        counts = positive_slice_counts(np.asarray(mask))
        if len(counts) != len(positions):  # items are training_items' rows of the same label file
            raise ValueError(f"series {uid}: {len(positions)} nodule items but its label volume has {len(counts)} positive slices")
        weights[positions] = counts.astype(np.float64) ** -float(nodule_balance)
        if faint_weight:
            volume, _ = labels.volumes.read_volume(uid)
            weights[positions] *= 1.0 + float(faint_weight) * positive_slice_faint_share(mask, volume)
    return weights.tolist()


def group_of(items: Sequence[dict[str, Any]]) -> list[int]:
    """Index into :data:`GROUPS` of every item (the sampler draws groups by configured shares)."""
    return [GROUPS.index(item["kind"]) for item in items]


def slice_items(prepared_dir: str | os.PathLike[str], parts: str | Sequence[str], cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every slice of the lung box (:func:`~lungmonai.segmentation.roi.lung_box`) of every series
    in ``parts``, in series then slice order: the voxels the pipeline segments, so reach here is
    the pipeline's, and nothing else is run through the network.

    ``row`` and ``col`` of a slice item are the box's first row and column; ``height`` and
    ``width`` the extent every slice is padded to, the largest box of these series (a batch can
    hold slices of two CTs); the padding reads the CT beyond a smaller box, so a slice may show
    a few more voxels than the pipeline segments. On the 49 val series of the 120-series 1 mm
    development set the boxes padded so hold 903 M voxels, against 2,018 M for whole slices
    padded to the largest CT.
    """
    prepared = require_prepared(prepared_dir)
    volumes = CropCache(cache_dir or prepared / "cache")
    boxes = {}
    for uid in split_series(prepared, parts):
        volume, geometry = volumes.read_volume(uid)
        boxes[uid] = lung_box(np.asarray(volume), geometry.spacing_irc)
    height = max((box[1].stop - box[1].start for box in boxes.values()), default=0)
    width = max((box[2].stop - box[2].start for box in boxes.values()), default=0)
    return [
        _item(uid, "slice", k, box[1].start, box[2].start, height, width)
        for uid, box in boxes.items()
        for k in range(box[0].start, box[0].stop)
    ]


def nodule_list(
    prepared_dir: str | os.PathLike[str], parts: str | Sequence[str], cache_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The annotated nodules of ``parts`` for the per-nodule recall: series, continuous centre
    (index, row, col), radius in mm, voxel spacing (irc), diameter and centre in mm."""
    prepared = require_prepared(prepared_dir)
    series = split_series(prepared, parts)
    table = load_candidate_table(prepared / "candidates.csv")
    rows = table[table["is_nodule"] & table["series_uid"].isin(series)]
    volumes = CropCache(cache_dir or prepared / "cache")
    out = []
    for row in rows.itertuples(index=False):
        _, geometry = volumes.read_volume(row.series_uid)
        xyz = np.array([row.center_x, row.center_y, row.center_z], dtype=np.float64)
        out.append(
            {
                "series_uid": str(row.series_uid),
                "center_xyz": xyz.tolist(),
                "center_irc": xyz_to_irc_continuous(xyz, geometry).tolist(),
                "spacing_irc": geometry.spacing_irc.tolist(),
                "diameter_mm": float(row.diameter_mm),
                "radius_mm": float(row.diameter_mm) / 2.0,
            }
        )
    return out


def overlay_slices(
    nodules: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]], count: int = 8, empty: int = 2, seed: int = 0
) -> list[tuple[str, int]]:
    """A fixed set of (series, slice) to draw every epoch: the centre slices of up to
    ``count - empty`` nodules, spread over sizes, plus ``empty`` slices without nodules."""
    order = sorted(range(len(nodules)), key=lambda k: nodules[k]["diameter_mm"])
    n_nod = min(len(order), max(count - empty, 0))
    picks = [order[int(round(j))] for j in np.linspace(0, len(order) - 1, n_nod)] if n_nod else []
    chosen = [(nodules[k]["series_uid"], int(np.floor(nodules[k]["center_irc"][0] + 0.5))) for k in picks]
    taken = set(chosen)
    near = {(n["series_uid"], s) for n in nodules for s in range(int(n["center_irc"][0]) - 5, int(n["center_irc"][0]) + 6)}
    pool = [(i["series_uid"], int(i["slice"])) for i in items if (i["series_uid"], int(i["slice"])) not in near]
    rng = np.random.default_rng(seed)
    for k in rng.permutation(len(pool))[: count - len(chosen)]:
        if pool[k] not in taken:
            chosen.append(pool[k])
    return chosen


def masks_dir_default(dataset_dir: str | os.PathLike[str]) -> str:
    """``dataset_dir/masks`` (the embedded dataset's contours)."""
    return str(Path(dataset_dir) / "masks")
