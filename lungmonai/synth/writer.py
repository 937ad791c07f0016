"""Write files exactly as LUNA16 ships them (MetaImage .mhd + .raw), atomically.

Headers carry LUNA16's keys in LUNA16's order, so any LUNA16 reader (SimpleITK, the book's
``getCt``, our ``read_ct``) reads the generated data unchanged. Every file is written to a
temp name in its directory and moved into place with ``os.replace``, so a killed run never
leaves a half file under a final name. Compressed masks use zlib (MetaImage's .zraw).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.synth.grid import SeriesGrid

# Our own root in the 2.25 (UUID-derived) arc, which DICOM reserves for UIDs made without a
# registered organisation root; deliberately not LIDC's 1.3.6.1.4.1.14519.5.2.1.6279.6001.
UID_PREFIX = "2.25."


def series_uid(seed: int, mode: str, index: int) -> str:
    """Deterministic DICOM-style UID (<= 64 chars) for series ``index`` of a run."""
    digest = hashlib.sha256(f"lungmonai-synth|{mode}|{seed}|{index}".encode()).digest()
    return UID_PREFIX + str(int.from_bytes(digest[:16], "big"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the data from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(values: np.ndarray | tuple[float, ...]) -> str:
    return " ".join(repr(float(v)) if float(v) != int(v) else str(int(v)) for v in values)


def mhd_header(grid: SeriesGrid, data_file: str, element_type: str, compressed_size: int | None = None) -> str:
    """LUNA16's header, key order included; CompressedDataSize only for .zraw."""
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {'True' if compressed_size is not None else 'False'}",
    ]
    if compressed_size is not None:
        lines.append(f"CompressedDataSize = {compressed_size}")
    lines += [
        "TransformMatrix = 1 0 0 0 1 0 0 0 1",
        f"Offset = {_fmt(grid.origin_xyz)}",
        "CenterOfRotation = 0 0 0",
        "AnatomicalOrientation = RAI",
        f"ElementSpacing = {_fmt(grid.spacing_xyz)}",
        f"DimSize = {grid.shape_irc[2]} {grid.shape_irc[1]} {grid.shape_irc[0]}",
        f"ElementType = {element_type}",
        f"ElementDataFile = {data_file}",
    ]
    return "\n".join(lines) + "\n"


def write_ct(mhd_path: Path, hu: np.ndarray, grid: SeriesGrid) -> None:
    """int16 HU (irc) -> <uid>.mhd + <uid>.raw, little-endian MET_SHORT."""
    if hu.dtype != np.int16 or hu.shape != grid.shape_irc:
        raise ValueError(f"{mhd_path}: expected int16 {grid.shape_irc}, got {hu.dtype} {hu.shape}")
    mhd_path = Path(mhd_path)
    raw = mhd_path.with_suffix(".raw")
    atomic_write_bytes(raw, np.ascontiguousarray(hu, dtype="<i2").tobytes())
    atomic_write_bytes(mhd_path, mhd_header(grid, raw.name, "MET_SHORT").encode())


def write_mask(mhd_path: Path, labels: np.ndarray, grid: SeriesGrid) -> None:
    """uint8 labels (irc) -> <uid>.mhd + <uid>.zraw (zlib, MET_UCHAR)."""
    if labels.dtype != np.uint8 or labels.shape != grid.shape_irc:
        raise ValueError(f"{mhd_path}: expected uint8 {grid.shape_irc}, got {labels.dtype} {labels.shape}")
    mhd_path = Path(mhd_path)
    zraw = mhd_path.with_suffix(".zraw")
    payload = zlib.compress(np.ascontiguousarray(labels).tobytes(), 6)
    atomic_write_bytes(zraw, payload)
    atomic_write_bytes(mhd_path, mhd_header(grid, zraw.name, "MET_UCHAR", compressed_size=len(payload)).encode())


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())
