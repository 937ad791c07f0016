"""MetaImage (.mhd + .raw/.zraw, or .mha) reader, the format LUNA16 ships in.

We parse the ``key = value`` header ourselves instead of going through SimpleITK so that a
broken file fails with a message naming the exact key, byte count or data file at fault, and
so that the common case (uncompressed little-endian MET_SHORT) is a single ``np.fromfile``
with no copy. Geometry follows ITK's MetaImageIO exactly: ``TransformMatrix`` is stored
column by column (each group of three numbers is one *column* of the direction matrix).

A header is data, not a program: it cannot make the reader open a file outside its own folder
(``ElementDataFile`` must name a file in that folder or below it, never an absolute path or a
``..`` escape), and it cannot ask for ``HeaderSize = -1`` (take the last bytes of whatever file
it names, which turns any large file into a "CT"). Sizes are Python integers, bounded by
:data:`MAX_VOXELS`, so an absurd ``DimSize`` is one :class:`CTReadError`, not an overflow.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungmonai.io.errors import CTReadError, check_3d, to_int16_hu
from lungmonai.io.volume import CTVolume, Geometry

# MetaIO element types we accept, as little-endian numpy type codes (byte order applied later).
ELEMENT_TYPES: dict[str, str] = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

# MetaIO accepts several spellings for the geometric keys; the first one present wins.
_OFFSET_KEYS = ("Offset", "Origin", "Position")
_MATRIX_KEYS = ("TransformMatrix", "Rotation", "Orientation")
_SPACING_KEYS = ("ElementSpacing", "ElementSize")

_MAX_HEADER_LINES = 500  # a real header has ~15; stop early on a binary file given by mistake

# 2**31 voxels (4 GiB of int16): 8x the largest LUNA16 CT (512 x 512 x 764), far below overflow.
MAX_VOXELS = 2**31


@dataclass(frozen=True)
class MetaHeader:
    """What the header says about the voxel data; ``data_offset`` is where voxels start."""

    shape_xyz: tuple[int, int, int]
    dtype: np.dtype
    element_type: str
    compressed: bool
    data_file: Path
    data_offset: int
    geometry: Geometry

    @property
    def voxels(self) -> int:
        return math.prod(int(s) for s in self.shape_xyz)  # Python integers: no int64 overflow

    @property
    def nbytes(self) -> int:
        return self.voxels * self.dtype.itemsize

    def describe(self) -> str:
        x, y, z = self.shape_xyz
        return f"DimSize {x} {y} {z} of {self.element_type} needs {self.nbytes} bytes"


def read_header_fields(path: Path) -> tuple[dict[str, str], int]:
    """Read ``key = value`` lines up to and including ``ElementDataFile`` (always the last key).

    Returns the fields and the byte offset just past the header, where ``LOCAL`` data start.
    """
    fields: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            for line_number in range(1, _MAX_HEADER_LINES + 1):
                raw = handle.readline()
                if not raw:
                    break
                try:
                    line = raw.decode("ascii").strip()
                except UnicodeDecodeError:
                    raise CTReadError(
                        path, f"header line {line_number} is not text; not a MetaImage header"
                    ) from None
                if not line:
                    continue
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise CTReadError(
                        path, f"malformed header line {line_number}: {line[:80]!r} is not 'key = value'"
                    )
                fields[key.strip()] = value.strip()
                if key.strip() == "ElementDataFile":
                    return fields, handle.tell()
    except OSError as error:
        raise CTReadError(path, f"cannot read header: {error.strerror or error}") from error
    raise CTReadError(path, "missing header key ElementDataFile (where the voxels are)")


def _get(path: Path, fields: dict[str, str], keys: tuple[str, ...] | str) -> tuple[str, str]:
    """The first of ``keys`` present in the header, and its value."""
    names = (keys,) if isinstance(keys, str) else keys
    for name in names:
        if name in fields:
            return name, fields[name]
    raise CTReadError(path, f"missing header key {' / '.join(names)}")


def _numbers(path: Path, fields: dict[str, str], keys: tuple[str, ...] | str, count: int,
             kind: type) -> list:
    key, text = _get(path, fields, keys)
    parts = text.split()
    try:
        values = [kind(part) for part in parts]
    except ValueError:
        raise CTReadError(
            path, f"malformed header key {key} = {text!r}: expected {count} {kind.__name__} values"
        ) from None
    if len(values) != count:
        raise CTReadError(
            path, f"malformed header key {key} = {text!r}: expected {count} values, got {len(values)}"
        )
    if kind is float and not all(np.isfinite(values)):
        raise CTReadError(path, f"malformed header key {key} = {text!r}: values must be finite")
    return values


def _flag(path: Path, fields: dict[str, str], key: str, default: bool) -> bool:
    if key not in fields:
        return default
    value = fields[key].lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise CTReadError(path, f"malformed header key {key} = {fields[key]!r}: expected True or False")


def parse_header(path: Path) -> MetaHeader:
    """Validate the header of ``path`` and resolve its data file; no voxel data are read."""
    fields, header_end = read_header_fields(path)

    object_type = fields.get("ObjectType", "Image")
    if object_type != "Image":
        raise CTReadError(path, f"ObjectType = {object_type} is not an image")
    (ndims,) = _numbers(path, fields, "NDims", 1, int)
    if ndims < 1:
        raise CTReadError(path, f"malformed header key NDims = {ndims}")
    dims = _numbers(path, fields, "DimSize", ndims, int)
    if min(dims) < 1:
        raise CTReadError(
            path, f"malformed header key DimSize = {fields['DimSize']!r}: sizes must be positive"
        )
    check_3d(path, dims)
    if math.prod(dims) > MAX_VOXELS:
        raise CTReadError(
            path, f"DimSize = {fields['DimSize']!r} is {math.prod(dims)} voxels, more than a CT "
            f"can have (at most {MAX_VOXELS})"
        )

    channels = fields.get("ElementNumberOfChannels", "1")
    if channels != "1":
        raise CTReadError(path, f"unsupported ElementNumberOfChannels = {channels}, CT has 1")
    if not _flag(path, fields, "BinaryData", True):
        raise CTReadError(path, "unsupported BinaryData = False (ASCII voxel data)")

    _, element_type = _get(path, fields, "ElementType")
    if element_type not in ELEMENT_TYPES:
        raise CTReadError(
            path,
            f"unsupported pixel type ElementType = {element_type} "
            f"(supported: {', '.join(ELEMENT_TYPES)})",
        )
    msb_keys = [k for k in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB") if k in fields]
    msb_flags = {_flag(path, fields, k, False) for k in msb_keys}
    if len(msb_flags) > 1:
        raise CTReadError(
            path, "BinaryDataByteOrderMSB and ElementByteOrderMSB disagree about the byte order"
        )
    big_endian = msb_flags.pop() if msb_flags else False
    dtype = np.dtype((">" if big_endian else "<") + ELEMENT_TYPES[element_type])

    spacing = _numbers(path, fields, _SPACING_KEYS, 3, float)
    if min(spacing) <= 0:
        raise CTReadError(
            path, f"malformed header key ElementSpacing: voxel spacing {spacing} must be positive"
        )
    origin = _numbers(path, fields, _OFFSET_KEYS, 3, float)
    matrix = _numbers(path, fields, _MATRIX_KEYS, 9, float)
    try:
        geometry = Geometry(origin, spacing, np.asarray(matrix).reshape(3, 3).T)
    except ValueError as error:
        raise CTReadError(
            path, f"malformed header geometry (Offset / ElementSpacing / TransformMatrix): {error}"
        ) from error

    compressed = _flag(path, fields, "CompressedData", False)
    data_name = fields["ElementDataFile"]
    if not data_name:
        raise CTReadError(path, "malformed header key ElementDataFile: no data file named")
    if data_name.split()[0].upper() == "LIST" or "%" in data_name:  # "LIST", "LIST 2D", "s%03d.raw 1 40 1"
        raise CTReadError(
            path, f"unsupported ElementDataFile = {data_name!r} (one data file per slice)"
        )
    if data_name.upper() == "LOCAL":
        return MetaHeader(tuple(dims), dtype, element_type, compressed, path, header_end, geometry)

    data_file = _data_file(path, data_name)
    header_size = int(_numbers(path, fields, "HeaderSize", 1, int)[0]) if "HeaderSize" in fields else 0
    if header_size == -1:
        raise CTReadError(
            path, f"unsupported HeaderSize = -1 for data file {data_file}: it takes the last bytes of "
            "any file as voxels; give the byte count before the voxels instead"
        )
    if header_size < 0:
        raise CTReadError(path, f"unsupported HeaderSize = {header_size}")
    return MetaHeader(tuple(dims), dtype, element_type, compressed, data_file, header_size, geometry)


def _data_file(path: Path, data_name: str) -> Path:
    """The file ``ElementDataFile`` names, refused unless it lies in the header's folder or below.

    The check is on the name itself (absolute, or ``..`` leaving the folder), so a header cannot
    point the reader at any other file on the machine, such as ``../../etc/passwd``.
    """
    normal = os.path.normpath(data_name)
    if os.path.isabs(data_name) or normal == ".." or normal.startswith(".." + os.sep):
        target = os.path.normpath(os.path.join(path.parent, data_name))
        raise CTReadError(
            path, f"ElementDataFile = {data_name!r} points outside the header's folder, to {target}; "
            f"a data file must lie in {path.parent} or below it"
        )
    if normal == ".":
        raise CTReadError(path, f"malformed header key ElementDataFile = {data_name!r}: not a file")
    return path.parent / normal


def _read_raw(path: Path, header: MetaHeader) -> np.ndarray:
    size = header.data_file.stat().st_size
    offset = header.data_offset
    available = size - offset
    if available < header.nbytes:
        raise CTReadError(
            path,
            f"data file {header.data_file.name} is truncated or DimSize is too large: "
            f"{header.describe()}, the file holds {available}",
        )
    if available > header.nbytes:
        raise CTReadError(
            path,
            f"DimSize does not match the data size: {header.describe()}, but data file "
            f"{header.data_file.name} holds {available}",
        )
    return np.fromfile(header.data_file, dtype=header.dtype, count=header.voxels,
                       offset=offset)


def _read_zraw(path: Path, header: MetaHeader) -> np.ndarray:
    with open(header.data_file, "rb") as handle:
        handle.seek(header.data_offset)
        packed = handle.read()
    # wbits 47 accepts both zlib and gzip streams, as MetaIO's inflate does.
    inflater = zlib.decompressobj(47)
    try:
        data = inflater.decompress(packed, header.nbytes + 1)
    except zlib.error as error:
        raise CTReadError(
            path, f"compressed data file {header.data_file.name} is corrupt: {error}"
        ) from error
    if len(data) > header.nbytes:
        raise CTReadError(
            path,
            f"DimSize does not match the data size: {header.describe()}, but data file "
            f"{header.data_file.name} decompresses to more",
        )
    if len(data) < header.nbytes:
        if not inflater.eof:
            raise CTReadError(
                path,
                f"compressed data file {header.data_file.name} is truncated: it decompresses to "
                f"only {len(data)} bytes before its end, {header.describe()}",
            )
        raise CTReadError(
            path,
            f"DimSize does not match the data size: {header.describe()}, but data file "
            f"{header.data_file.name} decompresses to {len(data)}",
        )
    # bytes are immutable; copy once so callers get an ordinary writable array.
    return np.frombuffer(data, dtype=header.dtype).copy()


def read_metaimage(path: Path) -> CTVolume:
    """Read a MetaImage CT; the series uid is the file stem, as LUNA16 names its files."""
    path = Path(path)
    header = parse_header(path)
    if not header.data_file.is_file():
        raise CTReadError(
            path, f"data file {header.data_file} named by ElementDataFile is missing"
        )
    try:
        flat = _read_zraw(path, header) if header.compressed else _read_raw(path, header)
    except OSError as error:
        raise CTReadError(
            path, f"cannot read data file {header.data_file}: {error.strerror or error}"
        ) from error
    x, y, z = header.shape_xyz
    hu = to_int16_hu(path, flat.reshape(z, y, x))
    return CTVolume(hu=hu, geometry=header.geometry, source=path, series_uid=path.stem)
