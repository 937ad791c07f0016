"""Atomic file writes: write a temp file in the destination's directory, then ``os.replace``.

A reader (or a rerun after a crash) then sees either the old file or the complete new one,
never a half-written file. The temp file lives in the same directory because ``os.replace``
is only atomic within one filesystem. Temp names start with a dot and end in ``.tmp`` so
that :func:`remove_stale_temps` can clean what a killed process left behind; they also name
their writer (host and process id), so that a rebuild right after a kill removes the dead
writer's volume-sized temp at once instead of keeping it for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 3600.0
"""A temp file untouched this long belongs to a killed writer; a younger one may be another
process's write in progress (two runs building the same cache), which must not be deleted."""

_WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def _host() -> str:
    """This machine's name as it goes into temp names: letters, digits and underscores only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _temp_prefix(path: Path) -> str:
    """``.<name>.<host>-<pid>.``: mkstemp adds a random part and ``.tmp``."""
    return f".{path.name}.{_host()}-{os.getpid()}."


def _writer_is_dead(tmp: Path) -> bool:
    """Whether ``tmp`` names a writer process on this machine that no longer runs.

    Unknown (another machine on a shared disk, an unnamed temp, this very process) is not dead:
    such a temp is left to the age rule.
    """
    match = _WRITER.search(tmp.name)
    if match is None or match["host"] != _host() or int(match["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


_UMASK_LOCK = threading.Lock()


def _file_mode() -> int:
    """What ``open()`` would give a new file: 0o666 less the umask (``mkstemp`` makes 0o600,
    which would hide caches, splits and reports from the other users of a shared machine).

    The umask is read from ``/proc`` where there is one: setting it to read it back, the only
    portable way, leaves a moment in which another thread's new files get mode 0o666.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); best effort where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True, **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file next to ``path`` for writing; on clean exit it replaces ``path``.

    On an exception the temp file is removed and ``path`` is left as it was.
    """
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode.replace("x", "w"), **open_kwargs) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, fsync: bool = True) -> Path:
    """JSON with a trailing newline; NaN/inf are refused because they are not JSON."""
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text, fsync=fsync)


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray, *, fsync: bool = True) -> Path:
    """``np.save`` through a file object, so numpy does not append a second ``.npy``."""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return Path(path)


def atomic_save_npy_crc32(path: str | os.PathLike[str], array: np.ndarray, *, fsync: bool = True) -> int:
    """:func:`atomic_save_npy`, returning the CRC-32 of the file's bytes (header and data) as written.

    The checksum is taken from the bytes in memory as they go out (about 12 ms for a 30 MB volume),
    so recording it costs no second read of the file.
    """
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    head = header.getvalue()
    data = memoryview(array).cast("B") if array.size else b""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(head)
        handle.write(data)
    return zlib.crc32(data, zlib.crc32(head))


def atomic_write_csv(path: str | os.PathLike[str], frame: pd.DataFrame, *, fsync: bool = True, **to_csv_kwargs: Any) -> Path:
    """``DataFrame.to_csv`` (index off unless asked) written atomically."""
    to_csv_kwargs.setdefault("index", False)
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, **to_csv_kwargs)
    return Path(path)


def jsonable(value: Any) -> Any:
    """``value`` ready for :func:`atomic_write_json`: numpy and pandas values as plain Python,
    NaN and infinities as null, through nested dicts, lists and frames. The writer itself
    stays strict (a NaN handed to it is an error), so a report decides what undefined means."""
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def remove_stale_temps(directory: str | os.PathLike[str], older_than_s: float = STALE_AFTER_S) -> int:
    """Delete temp files a killed writer left in ``directory``; returns how many.

    A temp is stale when its writer process on this machine is gone, or, when that cannot be
    told, when it has been untouched for ``older_than_s``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    now = time.time()
    for tmp in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if _writer_is_dead(tmp) or now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                removed += 1
    return removed
