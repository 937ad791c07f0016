"""Write tiny LUNA16-format datasets with SimpleITK, with nodules at known places.

Used by the table/cache/data_prep tests and by later bundle tests: everything a stage reads
from a real LUNA16 directory (subset*/uid.mhd+raw, annotations.csv, candidates.csv,
optional annotations_with_malignancy.csv) with answers the test knows in advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lungmonai.io import CTReadError, read_ct

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.9999.1"
BACKGROUND_HU = -850
NODULE_HU = 60


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation whose matrix is not symmetric (a transposition slip shows up)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_dicom_series(directory: Path, hu: np.ndarray, *, spacing, origin, direction: np.ndarray,
                       slope: float = 1.0, intercept: float = -1024.0, uid: str = UID_PREFIX + ".77",
                       prefix: str = "slice") -> list[Path]:
    """Write ``hu`` (irc) as one CT series the way SimpleITK's DICOM series example does.

    GDCM takes the image values as real-world HU and stores ``(hu - intercept) / slope``.
    Files are written in reverse slice order so that the reader has to sort them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(hu.astype(np.float64) if slope != int(slope) else hu)
    volume.SetSpacing(spacing)
    volume.SetOrigin(origin)
    volume.SetDirection(np.asarray(direction).ravel())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.12g}" for v in (*direction[:, 0], *direction[:, 1]))
    paths = []
    for k in reversed(range(volume.GetDepth())):
        slice_image = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.12g}" for v in position),
            "0020|0037": orientation,
            "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1",
            "0028|1052": f"{intercept:g}",
            "0028|1053": f"{slope:g}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        path = directory / f"{prefix}{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        paths.append(path)
    return paths


def touch(path: Path, text: str = "NDims = 3\n") -> Path:
    """A small file at ``path`` (parents made): a stand-in where only the name and place matter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_reoriented(source: Path | sitk.Image, destination: Path, order: tuple[int, int, int] = (0, 1, 2),
                     flips: tuple[bool, bool, bool] = (False, False, False)) -> Path:
    """The same voxels in patient space, stored with ITK axes ``order`` and ``flips`` (a sagittal
    or feet-first NIfTI of a LUNA16 series): what the readers must lay out as LUNA16's again."""
    image = sitk.ReadImage(str(source)) if isinstance(source, Path) else source
    destination.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Flip(sitk.PermuteAxes(image, order), flips), str(destination))
    return destination


def read_error(path: Path) -> str:
    """The CTReadError message for ``path``, checked to start with ``"<path>: "``."""
    with pytest.raises(CTReadError) as caught:
        read_ct(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


@dataclass
class FakeNodule:
    series_uid: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    malignant: bool


@dataclass
class FakeDataset:
    root: Path
    series: dict[str, Path]
    shapes_irc: dict[str, tuple[int, int, int]]
    nodules: list[FakeNodule] = field(default_factory=list)
    negatives: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    missing_series: str = ""  # in the CSVs, not on disk

    @property
    def series_uids(self) -> list[str]:
        return sorted(self.series)


MALIGNANCY_HEADER = ("seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,"
                     "bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details\n")


def write_nodule_tables(root: Path, uids: list[str], diameters, malignant) -> None:
    """``annotations.csv`` and ``annotations_with_malignancy.csv`` with one nodule per series, at
    the origin: for tests that score findings against the tables without any CT."""
    (root / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(
        f"{u},0,0,0,{d:.2f}\n" for u, d in zip(uids, diameters)))
    (root / "annotations_with_malignancy.csv").write_text(MALIGNANCY_HEADER + "".join(
        f'{u},0,0,0,{d:.2f},{bool(m)},"[3, 3, 3]",-4,-4,-4,4,4,4,3\n' for u, d, m in zip(uids, diameters, malignant)))


def series_uid(index: int) -> str:
    return f"{UID_PREFIX}.{index:04d}"


def _xyz_of(cri: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in origin + spacing * cri)  # identity direction


def _paint_sphere(hu: np.ndarray, center_irc: np.ndarray, radius_mm: float, spacing_irc: np.ndarray) -> None:
    """Set voxels within ``radius_mm`` of the centre to NODULE_HU, touching only its bounding box."""
    reach = np.ceil(radius_mm / spacing_irc).astype(int) + 1
    lo = np.maximum(center_irc - reach, 0)
    hi = np.minimum(center_irc + reach + 1, hu.shape)
    grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    dist2 = sum(((g - c) * sp) ** 2 for g, c, sp in zip(grid, center_irc, spacing_irc))
    box = hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    box[dist2 <= radius_mm**2] = NODULE_HU


def write_luna_dataset(
    root: str | Path,
    n_series: int = 4,
    shape_irc: tuple[int, int, int] = (24, 40, 40),
    spacing_xyz: tuple[float, float, float] = (1.5, 1.5, 2.0),
    nodules_per_series: tuple[int, ...] = (2, 1, 1, 0),
    negatives_per_series: int = 3,
    with_malignancy: bool = True,
    candidates_name: str = "candidates.csv",
    n_subsets: int = 2,
    seed: int = 0,
    noise_hu: int = 0,
    include_missing_series: bool = True,
) -> FakeDataset:
    """Write ``n_series`` volumes (background -850 HU, spherical nodules at 60 HU) and the CSVs.

    Series ``i`` goes to ``subset{i % n_subsets}``; it holds ``nodules_per_series[i % len]``
    nodules (every other one malignant) and ``negatives_per_series`` class-0 candidates.
    The CSVs also list class-1 candidates at the nodules (which the candidate table must
    ignore) and, with ``include_missing_series``, one series that is not on disk (to be dropped).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    data = FakeDataset(root=root, series={}, shapes_irc={})
    cand_rows: list[tuple[str, float, float, float, int]] = []
    for i in range(n_series):
        uid = series_uid(i)
        origin = np.array([-150.0 + 3.1 * i, -170.0 - 1.7 * i, -300.0 + 11.0 * i])
        if noise_hu:
            hu = (BACKGROUND_HU + rng.integers(-noise_hu, noise_hu + 1, size=shape_irc)).astype(np.int16)
        else:
            hu = np.full(shape_irc, BACKGROUND_HU, dtype=np.int16)
        for k in range(nodules_per_series[i % len(nodules_per_series)]):
            margin = np.array([3, 6, 6])
            center_irc = np.array([rng.integers(margin[a], shape_irc[a] - margin[a]) for a in range(3)])
            diameter = float(np.round(rng.uniform(3.5, 8.0), 3))
            _paint_sphere(hu, center_irc, diameter / 2, spacing[::-1])
            xyz = _xyz_of(center_irc[::-1].astype(np.float64), origin, spacing)
            data.nodules.append(FakeNodule(uid, xyz, diameter, malignant=(k % 2 == 0)))
            cand_rows.append((uid, *xyz, 1))
        for _ in range(negatives_per_series):
            center_cri = np.array([rng.uniform(0, shape_irc[2] - 1), rng.uniform(0, shape_irc[1] - 1), rng.integers(0, shape_irc[0])])
            xyz = _xyz_of(center_cri, origin, spacing)
            data.negatives.append((uid, xyz))
            cand_rows.append((uid, *xyz, 0))
        image = sitk.GetImageFromArray(hu)
        image.SetOrigin(tuple(origin))
        image.SetSpacing(tuple(spacing))
        subset = root / f"subset{i % n_subsets}"
        subset.mkdir(parents=True, exist_ok=True)
        path = subset / f"{uid}.mhd"
        sitk.WriteImage(image, str(path), False)
        data.series[uid] = path
        data.shapes_irc[uid] = tuple(int(s) for s in shape_irc)

    ann_rows = [(n.series_uid, *n.center_xyz, n.diameter_mm) for n in data.nodules]
    if include_missing_series:
        missing = series_uid(9000)
        data.missing_series = missing
        cand_rows += [(missing, 1.0, 2.0, 3.0, 0), (missing, 4.0, 5.0, 6.0, 1)]
        ann_rows.append((missing, 10.0, 20.0, 30.0, 5.0))
    xyz_cols = ["coordX", "coordY", "coordZ"]
    pd.DataFrame(cand_rows, columns=["seriesuid", *xyz_cols, "class"]).to_csv(root / candidates_name, index=False)
    pd.DataFrame(ann_rows, columns=["seriesuid", *xyz_cols, "diameter_mm"]).to_csv(root / "annotations.csv", index=False)
    if with_malignancy:
        rows = []
        for n in data.nodules:
            x, y, z = n.center_xyz
            r = n.diameter_mm / 2
            # malignant by the two-reads rule, though most readers disagree: a soft target
            # (share 0.4, mean rating 0.3) then differs from the hard label
            ratings = [4, 4, 1, 1, 1] if n.malignant else [2, 1, 3]
            # centres carry float noise, as in the real file
            rows.append((n.series_uid, x + 1e-9, y - 1e-9, z, n.diameter_mm, str(n.malignant), str(ratings),
                         x - r, y - r, z - r, x + r, y + r, z + r, len(ratings)))
        pd.DataFrame(
            rows,
            columns=["seriesuid", *xyz_cols, "diameter_mm", "mal_bool", "mal_details", "bboxLowX", "bboxLowY",
                     "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ", "len_mal_details"],
        ).to_csv(root / "annotations_with_malignancy.csv", index=False)
    return data


class CodePayload:
    """Unpickling this runs ``open(marker, "w")``: what a crafted checkpoint would do."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def ellipsoid_mask(semi_xyz: tuple[float, float, float], spacing_irc, offset_irc, angle: float = 0.0) -> np.ndarray:
    """Voxels whose centres lie in the ellipsoid with semi-axes ``semi_xyz`` (mm), turned by
    ``angle`` about z, centred ``offset_irc`` voxels off the middle of a box with room around it: phantoms of known
    size for the measurements' tests and bench/bench_reports.py."""
    spacing = np.asarray(spacing_irc, float)
    semi_irc = np.asarray(semi_xyz[::-1], float)
    shape = np.ceil(2 * semi_irc.max() / spacing).astype(int) + 6
    axes = [(np.arange(n) - ((n - 1) / 2 + o)) * s for n, o, s in zip(shape, offset_irc, spacing)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = cos * x + sin * y, -sin * x + cos * y
    return (z / semi_irc[0]) ** 2 + (across / semi_irc[1]) ** 2 + (along / semi_irc[2]) ** 2 <= 1
