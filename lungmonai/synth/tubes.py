"""Rasterise tapered tube segments (vessels, ribs, airways) into bounded sub-boxes.

Every tubular structure of the phantom is a list of segments ``p0 -> p1`` whose radius goes
linearly from ``r0`` to ``r1``. Each segment touches only the voxels of its own bounding box,
so drawing a tree of a thousand segments costs a thousand small numpy operations instead of
one pass over the whole volume per segment. Occupancy is anti-aliased (a voxel half inside
the tube gets 0.5), which is the partial-volume effect a scanner produces at tube walls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungmonai.synth.grid import SeriesGrid


@dataclass(frozen=True)
class Segments:
    """N tapered segments in patient mm: p0, p1 (N, 3) xyz and radii r0, r1 (N,)."""

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray

    def __len__(self) -> int:
        return int(self.p0.shape[0])

    @staticmethod
    def empty() -> "Segments":
        z = np.zeros((0, 3))
        return Segments(z, z.copy(), np.zeros(0), np.zeros(0))

    @staticmethod
    def concat(parts: list["Segments"]) -> "Segments":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Segments.empty()
        return Segments(
            np.concatenate([p.p0 for p in parts]),
            np.concatenate([p.p1 for p in parts]),
            np.concatenate([p.r0 for p in parts]),
            np.concatenate([p.r1 for p in parts]),
        )

    @staticmethod
    def from_polyline(points: np.ndarray, radii: np.ndarray) -> "Segments":
        """Consecutive points of a curve (M, 3) with radii (M,) -> M-1 segments."""
        points = np.asarray(points, dtype=np.float64)
        radii = np.asarray(radii, dtype=np.float64)
        return Segments(points[:-1], points[1:], radii[:-1], radii[1:])


def segment_box(grid: SeriesGrid, p0: np.ndarray, p1: np.ndarray, reach: float) -> tuple[slice, slice, slice] | None:
    """Voxel box (irc slices) holding every voxel within ``reach`` mm of segment p0-p1."""
    lo_xyz = np.minimum(p0, p1) - reach
    hi_xyz = np.maximum(p0, p1) + reach
    origin = np.asarray(grid.origin_xyz)
    spacing = np.asarray(grid.spacing_xyz)
    lo = np.floor((lo_xyz - origin) / spacing).astype(int)[::-1]
    hi = np.ceil((hi_xyz - origin) / spacing).astype(int)[::-1] + 1
    shape = np.asarray(grid.shape_irc)
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def segment_occupancy(
    grid: SeriesGrid, box: tuple[slice, slice, slice], p0: np.ndarray, p1: np.ndarray, r0: float, r1: float
) -> np.ndarray:
    """Anti-aliased fraction (float32, box shape) of each voxel inside the tapered segment."""
    z = grid.origin_xyz[2] + grid.spacing_xyz[2] * np.arange(box[0].start, box[0].stop)
    y = grid.origin_xyz[1] + grid.spacing_xyz[1] * np.arange(box[1].start, box[1].stop)
    x = grid.origin_xyz[0] + grid.spacing_xyz[0] * np.arange(box[2].start, box[2].stop)
    d = p1 - p0
    dd = float(d @ d)
    # Offsets of every voxel centre from p0, kept separable until the projection.
    ox = (x - p0[0])[None, None, :]
    oy = (y - p0[1])[None, :, None]
    oz = (z - p0[2])[:, None, None]
    if dd > 1e-12:
        t = np.clip((ox * d[0] + oy * d[1] + oz * d[2]) / dd, 0.0, 1.0)
    else:
        t = np.zeros((len(z), len(y), len(x)))
    dist = np.sqrt((ox - t * d[0]) ** 2 + (oy - t * d[1]) ** 2 + (oz - t * d[2]) ** 2)
    radius = r0 + t * (r1 - r0)
    # One voxel-width ramp across the wall (the in-plane pixel is the finest dimension).
    ramp = float(min(grid.spacing_xyz[0], grid.spacing_xyz[2]))
    return np.clip(0.5 + (radius - dist) / ramp, 0.0, 1.0).astype(np.float32)


def paint_segments(
    hu: np.ndarray,
    grid: SeriesGrid,
    segments: Segments,
    value: float | np.ndarray,
    region: np.ndarray | None = None,
    region_value: bool = True,
    occupancy_out: np.ndarray | None = None,
) -> None:
    """Composite ``value`` HU into ``hu`` over each segment, in place.

    ``hu[box] = hu * (1 - f) + value * f`` with f the anti-aliased occupancy; compositing the
    same value twice is idempotent, so overlapping segments of one tree stay one tissue.
    ``region`` (bool volume) restricts painting to voxels where it equals ``region_value``
    (vessels only inside lung, ribs only outside). ``occupancy_out`` (float32 volume) receives
    the max occupancy, for callers that need to know where the structure went.
    """
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(segments),))
    for i in range(len(segments)):
        p0, p1 = segments.p0[i], segments.p1[i]
        r0, r1 = float(segments.r0[i]), float(segments.r1[i])
        box = segment_box(grid, p0, p1, max(r0, r1) + 1.5 * max(grid.spacing_xyz))
        if box is None:
            continue
        f = segment_occupancy(grid, box, p0, p1, r0, r1)
        if region is not None:
            f = f * (region[box] == region_value)
        if not np.any(f):
            continue
        sub = hu[box]
        sub += (values[i] - sub) * f
        if occupancy_out is not None:
            np.maximum(occupancy_out[box], f, out=occupancy_out[box])
