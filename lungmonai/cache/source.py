"""Identity of a CT's source files, for cache keys.

A ``.mhd`` header points at a separate ``.raw``/``.zraw``; a cache entry must go stale when
either changes, so the identity covers both (the header is parsed by the CT reader's own
``parse_header``, so the two never disagree about which file holds the voxels).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lungmonai.io.metaimage import parse_header

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
        data = parse_header(path).data_file.resolve()
        if data != path:  # not LOCAL
            files.append(data)
    return [_stat_identity(p) for p in files]
