"""Crop extraction and the on-disk crop/volume cache that training reads from.

Layout, one directory per series under ``cache_dir/series/<series_uid>/``:
``crops.npy`` (N, 32, 48, 48) int16, row k = candidate ``series_row == k``;
``volume.npy`` (I, R, C) int16, the clipped volume cut to the body's rows and columns (the air
around it dropped, its geometry's origin moved to match: :func:`lungmonai.cache.build.body_box`);
``entry.json``, the sidecar.
Crops and volume are in LUNA16's array layout whatever the file's (``io.orient.to_lps``, as
inference reads it) and on the working grid (``io.grid.to_grid``: the contract's spacing, or
the CT's own voxels when it is None), with the geometry of that grid in the sidecar. The sidecar is
written last and holds the entry key (source identity + crop parameters + hash of the
candidate centres): it is the commit marker, so data files without a matching sidecar are
never trusted. Reads go through ``np.load(mmap_mode="r")``: a training step
touches one crop, not the whole file, and the OS page cache is shared by DataLoader workers.

The sidecar also holds a CRC-32 of each data file and of each crop, taken as they were written:
a file changed or damaged at the same size is found by the freshness check (``prepcache``
rebuilds the entry and reports it), a crop is checked on every read (about 0.03 ms) and a volume
the first time a process opens it, and a mismatch raises :class:`CacheCorruptError` naming the
file instead of training on the damaged bytes. Entries written before the checksums (format 3)
count as stale and are rebuilt; until then they are read unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.cache.source import source_identity
from lungmonai.io.volume import Geometry

CACHE_FORMAT = 5  # 2: volumes and crops in LUNA16's layout (io.orient.to_lps); 3: on the working grid;
# 4: CRC-32 of each data file and each crop in the sidecar; 5: the volume cut to the body (build.body_box)
ANY_GRID = "any"  # a reader that takes the entries on whatever grid they were built
CROPS_FILE = "crops.npy"
VOLUME_FILE = "volume.npy"
ENTRY_FILE = "entry.json"
DEFAULT_CROP_SHAPE = (32, 48, 48)
DEFAULT_HU_CLIP = (-1000, 1000)


class CacheMissError(LookupError):
    """The cache holds no valid entry for a series (never built, half built, or other params)."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class CacheCorruptError(ValueError):
    """A cache data file's bytes differ from what its sidecar recorded when it was written (changed
    or damaged on disk since); the message starts with the file. Rebuild with ``prepcache``."""


REBUILD_HINT = "rebuild it with data_prep/prepcache.py --dataset_dir DATASET"


def _changed_message(path: Path, what: str) -> str:
    return (f"{path}: {what} differs from the checksum recorded when the cache entry was built "
            "(the file was changed or damaged since)")


def _changed(path: Path, what: str) -> CacheCorruptError:
    return CacheCorruptError(f"{_changed_message(path, what)}; {REBUILD_HINT}")


def crc32(buffer: Any) -> int:
    """CRC-32 of a bytes-like object or a C-contiguous array."""
    return zlib.crc32(buffer) & 0xFFFFFFFF


def file_crc32(path: Path, chunk: int = 1 << 22) -> int:
    """CRC-32 of a file's bytes, read in ``chunk``-sized pieces."""
    value = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        while n := handle.readinto(buffer):
            value = zlib.crc32(view[:n], value)
    return value & 0xFFFFFFFF


def damaged_file(directory: Path, entry: dict[str, Any]) -> str | None:
    """``"<file>: <problem>"`` for the first data file of the entry whose bytes differ from the
    CRC-32 its sidecar recorded, None when all match. Reads every data file in full."""
    for name, expected in sorted(entry["crc32"].items()):
        try:
            if file_crc32(directory / name) != int(expected):
                return _changed_message(directory / name, "its content")
        except OSError as error:
            return f"{directory / name}: {error.strerror or type(error).__name__}"
    return None


def round_half_up(center_irc: Sequence[float] | np.ndarray) -> np.ndarray:
    """Nearest voxel index, rounding halves up as ITK's ``TransformPhysicalPointToIndex`` does."""
    return np.floor(np.asarray(center_irc, dtype=np.float64) + 0.5).astype(np.int64)


def extract_crop(
    hu: np.ndarray,
    center_irc: Sequence[float] | np.ndarray,
    crop_shape: Sequence[int] = DEFAULT_CROP_SHAPE,
    pad_value: int | float = -1000,
) -> np.ndarray:
    """The ``crop_shape`` box centred on ``center_irc``, padded with ``pad_value`` outside ``hu``.

    Voxel ``center - shape // 2`` is the crop's first voxel along each axis (the book's
    convention for even sizes). Near a border the crop is padded, never shifted: crop voxel
    ``(a, b, c)`` is always volume voxel ``start + (a, b, c)``, so the candidate stays at the
    crop centre and positional labels (e.g. a nodule mask) keep lining up. Pure function,
    used for cache builds and for uncached inference alike. Returns a new array, ``hu``'s dtype.
    """
    if hu.ndim != 3:
        raise ValueError(f"expected a 3D (index,row,col) volume, got shape {hu.shape}")
    shape = np.asarray(tuple(int(s) for s in crop_shape), dtype=np.int64)
    if shape.shape != (3,) or np.any(shape <= 0):
        raise ValueError(f"crop_shape must be three positive sizes, got {crop_shape}")
    center = round_half_up(center_irc).reshape(3)
    start = center - shape // 2
    stop = start + shape
    out = np.full(tuple(shape), pad_value, dtype=hu.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(stop, hu.shape)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - start
        dst_hi = dst_lo + (src_hi - src_lo)
        out[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = hu[
            src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
        ]
    return out


def clip_hu(hu: np.ndarray, hu_clip: Sequence[int] = DEFAULT_HU_CLIP) -> np.ndarray:
    """Clip to the HU window, keeping int16 (the window fits, and halves the cache)."""
    lo, hi = (int(v) for v in hu_clip)
    return np.clip(hu, lo, hi).astype(np.int16, copy=False)


def centers_digest(centers_xyz: np.ndarray) -> str:
    """SHA-256 of the centres in table order (rounded to 1 µm so CSV float noise is ignored)."""
    centers = np.round(np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3), 6) + 0.0
    return hashlib.sha256(np.ascontiguousarray(centers).tobytes()).hexdigest()


@dataclass(frozen=True)
class CacheParams:
    """Everything besides the source and the centres that changes cached bytes."""

    crop_shape: tuple[int, int, int] = DEFAULT_CROP_SHAPE
    hu_clip: tuple[int, int] = DEFAULT_HU_CLIP
    pad_value: int = -1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_shape", tuple(int(s) for s in self.crop_shape))
        object.__setattr__(self, "hu_clip", tuple(int(v) for v in self.hu_clip))
        object.__setattr__(self, "pad_value", int(self.pad_value))
        if len(self.crop_shape) != 3 or min(self.crop_shape) <= 0:
            raise ValueError(f"crop_shape must be three positive sizes, got {self.crop_shape}")
        lo, hi = self.hu_clip
        if not (-32768 <= lo < hi <= 32767):
            raise ValueError(f"hu_clip must be an increasing int16 pair, got {self.hu_clip}")
        if not lo <= self.pad_value <= hi:  # padding outside the clip range would differ from an in-CT crop of air
            raise ValueError(f"pad_value {self.pad_value} lies outside hu_clip {self.hu_clip}")

    def to_json(self) -> dict[str, Any]:
        return {"crop_shape": list(self.crop_shape), "hu_clip": list(self.hu_clip), "pad_value": self.pad_value}


def grid_json(grid_spacing_xyz: Sequence[float] | None) -> list[float] | None:
    return None if grid_spacing_xyz is None else [float(s) for s in grid_spacing_xyz]


def entry_key(source_path: str | os.PathLike[str], centers_xyz: np.ndarray, params: CacheParams,
              grid_spacing_xyz: Sequence[float] | None = None) -> dict[str, Any]:
    """The key a fresh entry's sidecar must hold, in its JSON form."""
    key = {
        "format": CACHE_FORMAT,
        "source": source_identity(source_path),
        "params": params.to_json(),
        "grid_spacing_xyz": grid_json(grid_spacing_xyz),
        "n_crops": int(np.asarray(centers_xyz).reshape(-1, 3).shape[0]),
        "centers_sha256": centers_digest(centers_xyz),
    }
    return json.loads(json.dumps(key))


def series_dir(cache_dir: str | os.PathLike[str], series_uid: str) -> Path:
    if not series_uid or "/" in series_uid or "\\" in series_uid or series_uid in {".", ".."}:
        raise ValueError(f"not a usable series uid for a cache path: {series_uid!r}")
    return Path(cache_dir) / "series" / series_uid


def read_entry(cache_dir: str | os.PathLike[str], series_uid: str) -> dict[str, Any] | None:
    """The sidecar if it exists, parses, and its data files have the recorded sizes; else None."""
    return read_sidecar(series_dir(cache_dir, series_uid))


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    """``directory``'s sidecar when it parses and every data file it lists has the recorded size."""
    try:
        entry = json.loads((directory / ENTRY_FILE).read_text(encoding="utf-8"))
        for name, size in entry["files"].items():
            if (directory / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return entry


class PerProcessLRU:
    """A small LRU of open memmaps, emptied when the pid changes.

    A forked DataLoader worker must not share its parent's cached handles (their lifetime
    belongs to the parent); each process opens its own, and keeping them open makes a read a
    slice of a mapped file instead of an open + header parse.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._pid = os.getpid()
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, load: Any) -> Any:
        if self._pid != os.getpid():
            self._items = OrderedDict()
            self._pid = os.getpid()
        try:
            self._items.move_to_end(key)
            return self._items[key]
        except KeyError:
            value = load()
            self._items[key] = value
            if len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        self._items.clear()

    def __getstate__(self) -> dict[str, Any]:  # pickled to spawn-started workers: start empty
        return {"maxsize": self.maxsize}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["maxsize"])  # type: ignore[misc]


class CropCache:
    """Reader (and freshness oracle) for a cache directory built by :func:`build_cache`."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        crop_shape: Sequence[int] = DEFAULT_CROP_SHAPE,
        hu_clip: Sequence[int] = DEFAULT_HU_CLIP,
        pad_value: int = -1000,
        max_open: int = 512,
        grid_spacing_xyz: Sequence[float] | None | str = ANY_GRID,
        verify: bool = True,
    ) -> None:
        """``grid_spacing_xyz``: the working grid the entries must be on (None: the CTs' own
        voxels); by default entries are read on whatever grid they were built. ``verify``: check
        each crop read, and each volume when this process first opens it, against the sidecar's
        CRC-32 (False only to measure what the check costs)."""
        self.cache_dir = Path(cache_dir)
        self.verify = verify
        self.params = CacheParams(tuple(crop_shape), tuple(hu_clip), pad_value)  # type: ignore[arg-type]
        self.grid = grid_spacing_xyz if isinstance(grid_spacing_xyz, str) else grid_json(grid_spacing_xyz)
        self._open = PerProcessLRU(max_open)

    def __repr__(self) -> str:
        return f"CropCache({str(self.cache_dir)!r}, {self.params})"

    def series_dir(self, series_uid: str) -> Path:
        return series_dir(self.cache_dir, series_uid)

    def entry(self, series_uid: str) -> dict[str, Any]:
        """The series' sidecar; :class:`CacheMissError` if absent/incomplete or built with other params."""
        def load() -> dict[str, Any]:
            entry = read_entry(self.cache_dir, series_uid)
            if entry is None:
                raise CacheMissError(
                    f"{self.series_dir(series_uid)}: no complete cache entry for series {series_uid} "
                    "(run data_prep/prepcache.py)"
                )
            if entry["key"]["params"] != self.params.to_json():
                raise CacheMissError(
                    f"{self.series_dir(series_uid)}: entry built with {entry['key']['params']}, "
                    f"reader expects {self.params.to_json()}"
                )
            if self.grid != ANY_GRID and entry["key"].get("grid_spacing_xyz") != self.grid:
                raise CacheMissError(
                    f"{self.series_dir(series_uid)}: entry built on the grid {entry['key'].get('grid_spacing_xyz')} mm, "
                    f"the bundles' contract asks for {self.grid}; run data_prep/prepare_luna.py again"
                )
            return entry

        return self._open.get(("entry", series_uid), load)

    def _memmap(self, series_uid: str, name: str) -> np.ndarray:
        def load() -> np.ndarray:
            entry = self.entry(series_uid)
            path = self.series_dir(series_uid) / name
            if name == VOLUME_FILE and self.verify and "crc32" in entry:
                _verify_once(path, int(entry["crc32"][name]))
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, EOFError) as error:  # a header no longer numpy's
                raise CacheCorruptError(f"{path}: not a readable array any more ({error}); {REBUILD_HINT}") from None
            expected = ((entry["key"].get("n_crops", array.shape[0]), *self.params.crop_shape) if name == CROPS_FILE
                        else tuple(entry.get("volume_shape", array.shape)))
            if array.dtype != np.int16 or array.shape != tuple(expected):
                raise CacheCorruptError(f"{path}: holds {array.dtype} {array.shape}, its sidecar says int16 "
                                        f"{tuple(expected)}; {REBUILD_HINT}")
            return array

        return self._open.get((name, series_uid), load)

    def read_crop(self, series_uid: str, series_row: int) -> np.ndarray:
        """Crop ``series_row`` of the series: int16 ``crop_shape`` array (a private copy), checked
        against the CRC-32 recorded for it (:class:`CacheCorruptError` naming the file if it differs)."""
        crops = self._memmap(series_uid, CROPS_FILE)
        row = int(series_row)
        if not 0 <= row < crops.shape[0]:
            raise IndexError(f"series {series_uid} has {crops.shape[0]} cached crops, asked for row {row}")
        crop = np.array(crops[row])
        if self.verify:
            expected = self.entry(series_uid).get("crop_crc32")
            if expected is not None and crc32(crop) != expected[row]:
                raise _changed(self.series_dir(series_uid) / CROPS_FILE, f"crop {row}")
        return crop

    def read_volume(self, series_uid: str) -> tuple[np.ndarray, Geometry]:
        """The clipped int16 (I, R, C) volume as a read-only memmap, and its geometry."""
        volume = self._memmap(series_uid, VOLUME_FILE)
        geometry = self.entry(series_uid)["geometry"]
        return volume, Geometry(
            np.asarray(geometry["origin_xyz"]), np.asarray(geometry["spacing_xyz"]), np.asarray(geometry["direction"])
        )

    def working_grid(self, series_uid: str) -> tuple[Geometry, tuple[int, int, int], tuple[int, int, int]]:
        """The whole working grid the stored volume was cut from (its body's box): that grid's
        geometry and shape, and the (slice, row, col) where the stored volume starts in it.
        Label volumes are made on this grid and cut the same way."""
        entry = self.entry(series_uid)
        g = entry["geometry"]
        if "grid_origin_xyz" not in entry:  # formats before 5 stored the whole grid, uncut; read as such until rebuilt
            shape = self._memmap(series_uid, VOLUME_FILE).shape
            return Geometry(np.asarray(g["origin_xyz"]), np.asarray(g["spacing_xyz"]), np.asarray(g["direction"])), shape, (0, 0, 0)
        grid = Geometry(np.asarray(entry["grid_origin_xyz"]), np.asarray(g["spacing_xyz"]), np.asarray(g["direction"]))
        return grid, tuple(entry["grid_shape"]), tuple(entry["body_box_irc"])

    def has_entry(self, series_uid: str) -> bool:
        """A complete entry with this reader's params exists (no source check)."""
        try:
            self.entry(series_uid)
        except CacheMissError:
            return False
        return True

    def is_fresh(self, series_uid: str, source_path: str | os.PathLike[str], centers_xyz: np.ndarray) -> bool:
        """The entry exists, is complete, and matches the source files, params and centres now
        (by its key: :func:`damaged_file` checks the data files' bytes)."""
        entry = read_entry(self.cache_dir, series_uid)
        if entry is None or "crc32" not in entry or "crop_crc32" not in entry:
            return False
        try:
            grid = None if self.grid == ANY_GRID else self.grid
            return entry.get("key") == entry_key(source_path, centers_xyz, self.params, grid)
        except (OSError, ValueError):
            return False

    def forget(self) -> None:
        """Drop open memmaps and sidecars (after a rebuild in this process)."""
        self._open.clear()


_VERIFIED: dict[str, Any] = {"pid": None, "files": set()}


def _verify_once(path: Path, expected: int) -> None:
    """Check ``path``'s CRC-32 unless this process already found it intact (as the same file:
    size and mtime); a reader evicting and reopening a volume reads it through only once."""
    if _VERIFIED["pid"] != os.getpid():  # a forked worker checks for itself
        _VERIFIED["pid"], _VERIFIED["files"] = os.getpid(), set()
    st = path.stat()
    identity = (str(path), st.st_size, st.st_mtime_ns, expected)
    if identity in _VERIFIED["files"]:
        return
    if file_crc32(path) != expected:
        raise _changed(path, "its content")
    _VERIFIED["files"].add(identity)


def require_grid(cache_dir: str | os.PathLike[str], grid_spacing_xyz: Sequence[float] | None) -> None:
    """Refuse a cache any of whose entries is on another working grid than ``grid_spacing_xyz``
    (a run trained on it would learn other voxel sizes than inference analyses)."""
    expected = grid_json(grid_spacing_xyz)
    other: dict[str, int] = {}
    for sidecar in sorted((Path(cache_dir) / "series").glob(f"*/{ENTRY_FILE}")):
        try:
            grid = json.loads(sidecar.read_text(encoding="utf-8"))["key"].get("grid_spacing_xyz")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable sidecar is a missing entry: the reader names it
        if grid != expected:
            other[json.dumps(grid)] = other.get(json.dumps(grid), 0) + 1
    if other:
        found = ", ".join(f"{n} on {grid}" for grid, n in other.items())
        raise CacheMissError(f"{cache_dir}: cache entries are on another working grid than the bundles' contract "
                             f"({expected} mm): {found}; run data_prep/prepare_luna.py again to rebuild them")
