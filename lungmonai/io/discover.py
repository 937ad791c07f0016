"""Find the CT series of a LUNA16-layout dataset directory.

LUNA16 names each ``.mhd`` by its SeriesInstanceUID and spreads them over ``subset0..9``; a
uid appearing twice (e.g. a subset unpacked twice, or copied to the top level) would make
every later join on ``seriesuid`` ambiguous, so it is an error rather than last-one-wins.
"""

from __future__ import annotations

from pathlib import Path

from lungmonai.io.errors import CTReadError


def find_series(dataset_dir: str | Path) -> dict[str, Path]:
    """Map series uid -> ``.mhd`` path for ``subset*/*.mhd`` and top-level ``*.mhd``.

    The dict is ordered by uid so that every consumer iterates in the same order on every
    machine. Hidden files (``._x.mhd`` left by macOS archivers) are skipped. ``masks/`` and other
    directories are not searched. An empty dataset gives an empty dict.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise CTReadError(root, "dataset directory not found")
    candidates = [*root.glob("*.mhd"), *root.glob("subset*/*.mhd")]
    found: dict[str, Path] = {}
    for path in sorted(p for p in candidates if p.is_file() and not p.name.startswith(".")):
        uid = path.stem
        if uid in found:
            raise CTReadError(
                root, f"series uid {uid} found twice: {found[uid]} and {path}"
            )
        found[uid] = path
    return dict(sorted(found.items()))


CT_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha")
"""The single-file CT formats ``read_ct`` reads (``.nii.gz`` before ``.nii``, for stripping)."""


def looks_like_dicom(path: Path) -> bool:
    """Part 10 files carry 'DICM' after a 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def output_stem(path: str | Path) -> str:
    """A CT's name: the file name without ``.mhd``/``.mha``/``.nii``/``.nii.gz`` (a LUNA16
    series uid keeps its dots), or a DICOM directory's name. A NIfTI CT's series uid is this."""
    name = Path(path).name
    for suffix in CT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
