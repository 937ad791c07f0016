"""Generate one synthetic series from one LIDC scan: CT, label mask, table rows, manifest.

Runs in a worker process; everything it needs arrives in a picklable :class:`SeriesTask`
and everything the dataset-level files need comes back as plain rows, so the parent only
concatenates. The random stream is seeded from (seed, series index, mode) alone, so a
series is the same whichever worker runs it and in whatever order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungmonai.geometry import irc_to_xyz, xyz_to_irc
from lungmonai.lidc.malignancy import format_ratings
from lungmonai.synth.candidates import negative_candidates, positive_candidates
from lungmonai.synth.grid import MODES, SeriesGrid, make_grid
from lungmonai.synth.lidc_nodules import LidcScanSource, equivalent_diameter_mm, resample_mask
from lungmonai.synth.mimics import draw_mimics
from lungmonai.synth.nodule_render import blend_nodule, consensus_calcification, consensus_texture, nodule_hu
from lungmonai.synth.phantom import Chest, finish_ct, render_chest
from lungmonai.synth.placement import Placement, mask_radius_mm, place_nodules, pleura_map
from lungmonai.synth.writer import series_uid, write_ct, write_mask

MASK_DIR = "masks"


@dataclass(frozen=True)
class SeriesTask:
    index: int
    source: LidcScanSource
    mode: str
    seed: int
    out_dir: str
    subset: int
    neg_ratio: float


@dataclass
class RenderedSeries:
    """In-memory result of one series, before writing (tests inspect it directly)."""

    uid: str
    grid: SeriesGrid
    ct: np.ndarray
    labels: np.ndarray
    chest: Chest
    placements: list[Placement]
    dropped: list[int]
    candidates_xyz: np.ndarray
    candidate_class: np.ndarray
    candidate_source: list[str]
    src_eq_diam: list[float]
    dst_eq_diam: list[float]


def series_rng(seed: int, index: int, mode: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), MODES.index(mode), 7]))


def _vessel_points_irc(chest: Chest, grid: SeriesGrid) -> np.ndarray:
    """Bifurcations and midpoints of vessels >= 1 mm: where perivascular nodules sit."""
    s = chest.structures.vessels
    seg = s.segments
    big = seg.r0 >= 1.0
    pts = np.concatenate([s.bifurcations, (seg.p0[big] + seg.p1[big]) / 2.0])
    irc = xyz_to_irc(pts, grid.geometry)
    ok = np.all((irc >= 0) & (irc < np.array(grid.shape_irc)), axis=1)
    irc = irc[ok]
    return irc[chest.lung[irc[:, 0], irc[:, 1], irc[:, 2]]]


def render_series(source: LidcScanSource, index: int, mode: str, seed: int, neg_ratio: float) -> RenderedSeries:
    """Build the CT, the label volume and the candidates of one series (no file I/O)."""
    rng = series_rng(seed, index, mode)
    uid = series_uid(seed, mode, index)
    grid = make_grid(mode, rng, source.pixel_spacing, source.slice_spacing, source.n_slices)
    chest = render_chest(grid, rng)
    sp = grid.spacing_irc
    masks = [resample_mask(n.mask_irc, n.spacing_irc, sp) for n in source.nodules]
    src_eq = [equivalent_diameter_mm(n.mask_irc, n.spacing_irc) for n in source.nodules]
    dst_eq = [equivalent_diameter_mm(m, sp) for m in masks]
    pmap = pleura_map(chest.lung, grid)
    placements, dropped = place_nodules(masks, chest.lung, grid, _vessel_points_irc(chest, grid), pmap, rng)
    labels = np.zeros(grid.shape_irc, dtype=np.uint8)
    for label, pl in enumerate(placements, start=1):
        labels[pl.box][pl.mask] = label
        ratings = [r.ratings for r in source.nodules[pl.source_index].reads]
        values = nodule_hu(pl.mask, sp, consensus_texture(ratings), consensus_calcification(ratings), rng)
        blend_nodule(chest.hu, pl.mask, pl.start, values)
    centres = np.array([pl.centre_xyz for pl in placements]).reshape(-1, 3)
    radii = np.array(
        [max(source.nodules[pl.source_index].diameter_mm / 2.0, mask_radius_mm(pl.mask, sp)) for pl in placements]
    )
    mimics = draw_mimics(chest.hu, chest.lung, grid, pmap, centres, radii, rng)
    ct = finish_ct(chest.hu, grid, rng)
    eq_r = np.array([dst_eq[pl.source_index] / 2.0 for pl in placements])
    pos = positive_candidates(centres, eq_r, rng)
    n_neg = int(round(neg_ratio * max(len(pos), 1)))
    seg = chest.structures.vessels.segments
    vessel_mid = ((seg.p0 + seg.p1) / 2.0)[seg.r0 >= 0.8]
    mimic_xyz = np.concatenate([mimics.scar_centres, mimics.granuloma_centres]).reshape(-1, 3)
    neg, neg_src = negative_candidates(
        n_neg, grid, chest.lung, labels, pmap, chest.structures.vessels.bifurcations, vessel_mid, mimic_xyz, centres, radii, rng
    )
    cand = np.concatenate([pos, neg]).reshape(-1, 3)
    cls = np.concatenate([np.ones(len(pos), dtype=int), np.zeros(len(neg), dtype=int)])
    return RenderedSeries(uid, grid, ct, labels, chest, placements, dropped, cand, cls, ["nodule"] * len(pos) + neg_src, src_eq, dst_eq)


def _r(v: float, nd: int = 4) -> float:
    return round(float(v), nd)


def generate_series(task: SeriesTask) -> dict[str, Any]:
    """Render, write ``subsetK/<uid>.mhd/.raw`` and ``masks/<uid>.mhd/.zraw``, return rows."""
    t0 = time.perf_counter()
    src = task.source
    rs = render_series(src, task.index, task.mode, task.seed, task.neg_ratio)
    out = Path(task.out_dir)
    ct_rel = f"subset{task.subset}/{rs.uid}.mhd"
    mask_rel = f"{MASK_DIR}/{rs.uid}.mhd"
    write_ct(out / ct_rel, rs.ct, rs.grid)
    write_mask(out / mask_rel, rs.labels, rs.grid)
    sp = rs.grid.spacing_irc
    annotations, malignancy, nodules = [], [], []
    for label, pl in enumerate(rs.placements, start=1):
        nod = src.nodules[pl.source_index]
        nz = np.argwhere(pl.mask) + np.asarray(pl.start)
        low = irc_to_xyz(nz.min(axis=0).astype(float), rs.grid.geometry)
        high = irc_to_xyz(nz.max(axis=0).astype(float), rs.grid.geometry)
        c = [_r(v) for v in pl.centre_xyz]
        # LUNA16's diameter_mm is the volume-equivalent diameter of the reads' consensus (on the
        # real tables: 0.99x the 50% consensus's, 0.72x the mean of pylidc's greatest axial
        # diameters), so the CSVs carry the consensus's at the LIDC scan's own spacing.
        d = _r(rs.src_eq_diam[pl.source_index])
        annotations.append([rs.uid, *c, d])
        mal = nod.malignancy_ratings
        malignancy.append([rs.uid, *c, d, nod.is_malignant, format_ratings(mal), *[_r(v) for v in low], *[_r(v) for v in high], len(mal)])
        ratings = [r.ratings for r in nod.reads]
        nodules.append(
            {
                "series_uid": rs.uid,
                "label": label,
                "center_xyz": c,
                "diameter_mm": d,
                "equivalent_diameter_mm": {"lidc": _r(rs.src_eq_diam[pl.source_index]), "synthetic": _r(rs.dst_eq_diam[pl.source_index])},
                "volume_mm3": _r(float(pl.mask.sum()) * float(np.prod(sp)), 2),
                "is_malignant": nod.is_malignant,
                "malignancy_ratings": mal,
                "texture": consensus_texture(ratings),
                "calcification": consensus_calcification(ratings),
                "placement": pl.kind,
                "touches_pleura": pl.touches_pleura,
                "mask_file": mask_rel,
                "lidc": {
                    "patient_id": src.patient_id,
                    "series_uid": src.series_uid,
                    "scan_id": src.scan_id,
                    "annotation_ids": nod.annotation_ids,
                },
                "reads": [{"annotation_id": r.annotation_id, "diameter_mm": _r(r.diameter_mm), **r.ratings} for r in nod.reads],
            }
        )
    candidates = [[rs.uid, *[_r(v) for v in xyz], int(k)] for xyz, k in zip(rs.candidates_xyz, rs.candidate_class)]
    series = {
        "series_uid": rs.uid,
        "index": task.index,
        "subset": task.subset,
        "file": ct_rel,
        "mask_file": mask_rel,
        "shape_irc": list(rs.grid.shape_irc),
        "spacing_xyz": list(rs.grid.spacing_xyz),
        "origin_xyz": list(rs.grid.origin_xyz),
        "n_nodules": len(rs.placements),
        "lidc": {
            "patient_id": src.patient_id,
            "series_uid": src.series_uid,
            "scan_id": src.scan_id,
            "pixel_spacing": src.pixel_spacing,
            "slice_spacing": src.slice_spacing,
            "slice_thickness": src.slice_thickness,
        },
        "dropped_lidc_nodules": [src.nodules[i].annotation_ids for i in rs.dropped],
        "candidate_sources": {k: rs.candidate_source.count(k) for k in sorted(set(rs.candidate_source))},
    }
    return {
        "series": series,
        "annotations": annotations,
        "malignancy": malignancy,
        "candidates": candidates,
        "nodules": nodules,
        "seconds": time.perf_counter() - t0,
    }
