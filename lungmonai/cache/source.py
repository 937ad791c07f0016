"""Identity of a CT's source files, for cache keys, and a MetaImage header reader for checks.

A ``.mhd`` header points at a separate ``.raw``/``.zraw``; a cache entry must go stale when
either changes, so the identity covers both. Header parsing is deliberately tiny (key = value
lines) so that ``check_dataset`` can verify data-file sizes without decoding any voxels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

METAIO_ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}
_MAX_HEADER_BYTES = 64 * 1024


class MetaHeaderError(ValueError):
    """A ``.mhd`` header that cannot be parsed."""


def read_mhd_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """``key = value`` pairs of a MetaImage header, up to and including ``ElementDataFile``."""
    path = Path(path)
    header: dict[str, str] = {}
    with open(path, "rb") as handle:
        raw = handle.read(_MAX_HEADER_BYTES)
    for line in raw.split(b"\n"):
        text = line.decode("latin-1").strip()
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep:
            raise MetaHeaderError(f"{path}: header line without '=': {text[:80]!r}")
        header[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "ElementDataFile" not in header:
        raise MetaHeaderError(f"{path}: header has no ElementDataFile")
    return header


def mhd_data_file(path: str | os.PathLike[str], header: dict[str, str] | None = None) -> Path | None:
    """The data file a ``.mhd`` points to (None for ``LOCAL`` or file lists)."""
    path = Path(path)
    header = header if header is not None else read_mhd_header(path)
    name = header["ElementDataFile"]
    if name.upper() == "LOCAL" or name.upper().startswith("LIST") or "%" in name:
        return None
    return path.parent / name


def expected_data_bytes(header: dict[str, str], path: Path | str = "header") -> int | None:
    """Uncompressed voxel bytes the header promises; None when compressed (size unknown)."""
    if header.get("CompressedData", "False").strip().lower() == "true":
        size = header.get("CompressedDataSize")
        return int(size) if size else None
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        element = METAIO_ELEMENT_BYTES[header["ElementType"].strip()]
    except (KeyError, ValueError) as exc:
        raise MetaHeaderError(f"{path}: cannot read DimSize/ElementType: {exc}") from exc
    channels = int(header.get("ElementNumberOfChannels", "1"))
    total = element * channels
    for d in dims:
        total *= d
    return total


def _stat_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def source_identity(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """(resolved path, size, mtime_ns) of every file the CT is read from.

    ``.mhd``: the header and its data file; a directory (DICOM series): each file in it;
    anything else: the file itself. Raises ``FileNotFoundError`` naming a missing file.
    """
    path = Path(path).resolve()
    if path.is_dir():
        return [_stat_identity(p) for p in sorted(path.iterdir()) if p.is_file()]
    files = [path]
    if path.suffix.lower() == ".mhd":
        data = mhd_data_file(path)
        if data is not None:
            files.append(data.resolve())
    return [_stat_identity(p) for p in files]
