"""Label volumes built once per series and cached next to the prepared crop/volume cache.

Training reads a label window per sample; building a mask (box rule or decoding a contour
file) per sample would cost more than the network step. So each series' boolean mask is
written once as ``LABEL_DIR/<label_source>/<uid>/label.npy`` (uint8, memory-mapped on read)
with ``positives.npy`` (the slices training windows are centred on) and a sidecar
``entry.json`` written last, holding the key: the CT's cache key (source identity), the
label source and its parameters, the nodule centres (annotations) or the contour file's
identity (contours). A changed input makes the key differ and the entry is rebuilt; writes
are atomic, so a killed build leaves no entry that looks valid.

``label.npy`` holds only the mask's bounding box (its place in the volume is in the sidecar):
nodules fill a few thousandths of a chest CT, and on the 1 x 1 x 1.25 mm grid whole-volume
masks of the 120 development series took 3.7 GB of the 25 GB data budget, the boxes a few MB.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.cache.atomic import atomic_save_npy, atomic_write_json, remove_stale_temps
from lungmonai.cache.crops import CropCache, PerProcessLRU, centers_digest, read_sidecar
from lungmonai.cache.source import source_identity
from lungmonai.geometry import xyz_to_irc
from lungmonai.progress import progress
from lungmonai.segmentation.labels import (
    DEFAULT_MIN_RADIUS,
    DEFAULT_THRESHOLD_HU,
    BoxedMask,
    box_rule_mask,
    boxed_mask,
    find_mask_file,
    positive_slices,
    read_contour_mask,
)

LABEL_FORMAT = 2
LABEL_FILE = "label.npy"
POSITIVES_FILE = "positives.npy"
ENTRY_FILE = "entry.json"
LABEL_SOURCES = ("contours", "annotations")


@dataclass(frozen=True)
class LabelParams:
    """How labels are made; part of every entry's key."""

    label_source: str = "contours"
    masks_dir: str | None = None
    threshold_hu: float = DEFAULT_THRESHOLD_HU
    min_radius: int = DEFAULT_MIN_RADIUS

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {list(LABEL_SOURCES)}, got {self.label_source!r}")
        if self.label_source == "contours" and not self.masks_dir:
            raise ValueError("label_source 'contours' needs masks_dir (a directory of <uid>.mhd label volumes)")


def _label_dir(label_dir: str | os.PathLike[str], params: LabelParams, series_uid: str) -> Path:
    if not series_uid or "/" in series_uid or "\\" in series_uid or series_uid in {".", ".."}:
        raise ValueError(f"not a usable series uid for a cache path: {series_uid!r}")
    return Path(label_dir) / params.label_source / series_uid


def label_key(
    volume_key: Mapping[str, Any], params: LabelParams, nodules_xyz: np.ndarray, mask_path: Path | None
) -> dict[str, Any]:
    """The key a fresh entry's sidecar must hold (JSON form)."""
    key: dict[str, Any] = {"format": LABEL_FORMAT, "label_source": params.label_source, "volume": volume_key}
    if params.label_source == "annotations":
        key["params"] = {"threshold_hu": float(params.threshold_hu), "min_radius": int(params.min_radius)}
        key["nodules_sha256"] = centers_digest(np.asarray(nodules_xyz, dtype=np.float64).reshape(-1, 3))
    else:
        if mask_path is None:
            raise FileNotFoundError(
                f"{params.masks_dir}: no contour file for series {volume_key.get('series_uid', '?')}; "
                "use label_source 'annotations' for series without contours"
            )
        key["mask"] = source_identity(mask_path)
    return json.loads(json.dumps(key))


class LabelCache:
    """Builds (when missing or stale) and reads the label entries of one label source."""

    def __init__(
        self, cache_dir: str | os.PathLike[str], label_dir: str | os.PathLike[str], params: LabelParams, max_open: int = 64
    ) -> None:
        self.volumes = CropCache(cache_dir)
        self.label_dir = Path(label_dir)
        self.params = params
        self._open = PerProcessLRU(max_open)

    def __repr__(self) -> str:
        return f"LabelCache({str(self.label_dir)!r}, {self.params})"

    def directory(self, series_uid: str) -> Path:
        return _label_dir(self.label_dir, self.params, series_uid)

    def _key(self, series_uid: str, nodules_xyz: np.ndarray) -> dict[str, Any]:
        volume_key = dict(self.volumes.entry(series_uid)["key"], series_uid=series_uid)
        mask_path = find_mask_file(self.params.masks_dir, series_uid) if self.params.masks_dir else None
        return label_key(volume_key, self.params, nodules_xyz, mask_path)

    def is_fresh(self, series_uid: str, nodules_xyz: np.ndarray) -> bool:
        entry = read_sidecar(self.directory(series_uid))
        return entry is not None and entry.get("key") == self._key(series_uid, nodules_xyz)

    def build(self, series_uid: str, nodules_xyz: np.ndarray) -> dict[str, Any]:
        """Make the series' mask from its cached volume and write the entry (sidecar last)."""
        key = self._key(series_uid, nodules_xyz)
        volume, geometry = self.volumes.read_volume(series_uid)
        if self.params.label_source == "annotations":
            centers = xyz_to_irc(np.asarray(nodules_xyz, dtype=np.float64).reshape(-1, 3), geometry).reshape(-1, 3)
            mask = box_rule_mask(volume, centers, self.params.threshold_hu, self.params.min_radius)
        else:  # on the whole grid, then cut as the cached volume was
            grid, grid_shape, start = self.volumes.working_grid(series_uid)
            mask = read_contour_mask(find_mask_file(self.params.masks_dir, series_uid), grid, grid_shape)
            mask = mask[tuple(slice(o, o + n) for o, n in zip(start, volume.shape))]
        directory = self.directory(series_uid)
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (directory / ENTRY_FILE).unlink()
        remove_stale_temps(directory)
        positives = positive_slices(mask)
        boxed = boxed_mask(mask)
        atomic_save_npy(directory / LABEL_FILE, np.ascontiguousarray(boxed.box, dtype=np.uint8))
        atomic_save_npy(directory / POSITIVES_FILE, positives)
        entry = {
            "format": LABEL_FORMAT,
            "series_uid": series_uid,
            "key": key,
            "shape_irc": list(mask.shape),
            "box_origin_irc": list(boxed.origin),
            "label_voxels": int(mask.sum()),
            "positive_slices": int(len(positives)),
            "files": {name: (directory / name).stat().st_size for name in (LABEL_FILE, POSITIVES_FILE)},
        }
        atomic_write_json(directory / ENTRY_FILE, entry)
        return entry

    def ensure(self, nodules: Mapping[str, np.ndarray], desc: str = "label volumes") -> dict[str, int]:
        """Build every series of ``nodules`` (uid -> nodule centres xyz) not fresh; returns counts."""
        built = fresh = 0
        for uid in progress(sorted(nodules), desc=desc, unit="series"):
            if self.is_fresh(uid, nodules[uid]):
                fresh += 1
            else:
                self.build(uid, nodules[uid])
                built += 1
        self._open.clear()
        return {"built": built, "fresh": fresh}

    def _load(self, series_uid: str, name: str) -> Any:
        def load() -> Any:
            directory = self.directory(series_uid)
            entry = read_sidecar(directory)
            if entry is None:
                raise LookupError(f"{directory}: no complete label entry for series {series_uid}; build it first")
            array = np.load(directory / name, mmap_mode="r", allow_pickle=False)
            if name != LABEL_FILE:
                return array
            return BoxedMask(tuple(entry["shape_irc"]), tuple(entry["box_origin_irc"]), array)

        return self._open.get((name, series_uid), load)

    def read_labels(self, series_uid: str) -> BoxedMask:
        """The series' uint8 (I, R, C) mask (0/1): its bounding box, memory-mapped, placed in the
        volume (``np.asarray`` gives the whole mask; :func:`~lungmonai.segmentation.windows.read_label_patch` a window)."""
        return self._load(series_uid, LABEL_FILE)

    def read_positives(self, series_uid: str) -> np.ndarray:
        """``(N, 3)`` (slice, row, col) centres of the positive training windows."""
        return np.asarray(self._load(series_uid, POSITIVES_FILE))


def ensure_label_volumes(
    cache_dir: str | os.PathLike[str],
    label_dir: str | os.PathLike[str],
    params: LabelParams,
    nodules: Mapping[str, np.ndarray],
) -> LabelCache:
    """The label cache with every series of ``nodules`` built; what datasets are made from."""
    cache = LabelCache(cache_dir, label_dir, params)
    cache.ensure(nodules)
    return cache


def series_nodules(table: Any, series_uids: Iterable[str]) -> dict[str, np.ndarray]:
    """uid -> (N, 3) nodule centres xyz from the candidate table (empty for nodule-free series)."""
    positives = table[table["is_nodule"]]
    grouped = {uid: rows for uid, rows in positives.groupby("series_uid")}
    out: dict[str, np.ndarray] = {}
    for uid in series_uids:
        rows = grouped.get(uid)
        out[uid] = (
            np.zeros((0, 3)) if rows is None else rows[["center_x", "center_y", "center_z"]].to_numpy(np.float64)
        )
    return out


def label_params(label_source: str, masks_dir: str | None = None, threshold_hu: float = DEFAULT_THRESHOLD_HU,
                 min_radius: int = DEFAULT_MIN_RADIUS) -> LabelParams:
    """Config-friendly constructor (an empty ``masks_dir`` string means none)."""
    return LabelParams(label_source, masks_dir or None, float(threshold_hu), int(min_radius))


__all__: Sequence[str] = (
    "LABEL_SOURCES",
    "LabelCache",
    "LabelParams",
    "ensure_label_volumes",
    "label_key",
    "label_params",
    "series_nodules",
)
