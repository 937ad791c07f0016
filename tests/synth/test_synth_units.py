"""Pieces: mask resampling keeps size, uids, mode grids and their disk size, rating consensus."""

from __future__ import annotations

import numpy as np
import pytest

from lungmonai.synth.grid import make_grid, max_voxels
from lungmonai.synth.lidc_nodules import equivalent_diameter_mm, resample_mask
from lungmonai.synth.nodule_render import consensus_calcification, consensus_texture
from lungmonai.synth.writer import series_uid


def _sphere(diam_mm: float, spacing: np.ndarray) -> np.ndarray:
    n = np.ceil(diam_mm / spacing).astype(int) + 4
    idx = np.indices(n).transpose(1, 2, 3, 0) - (n - 1) / 2.0
    return ((idx * spacing) ** 2).sum(axis=-1) <= (diam_mm / 2) ** 2


@pytest.mark.parametrize("diam", [3.5, 6.0, 12.0, 30.0])
def test_resample_keeps_physical_size(diam: float) -> None:
    src_sp = np.array([1.25, 0.7, 0.7])
    mask = _sphere(diam, src_sp)
    for dst_sp in (np.array([2.3, 1.5, 1.5]), np.array([0.625, 0.55, 0.55])):
        out = resample_mask(mask, src_sp, dst_sp)
        assert out.any()
        e0, e1 = equivalent_diameter_mm(mask, src_sp), equivalent_diameter_mm(out, dst_sp)
        assert abs(e1 - e0) <= max(0.1 * e0, 0.6)
        extent = np.array(out.shape) * dst_sp
        assert np.all(extent < diam + 2 * dst_sp + 1.0)


def test_series_uids_are_dicom_style_and_deterministic() -> None:
    uids = {series_uid(0, "small", i) for i in range(50)}
    assert len(uids) == 50 and series_uid(0, "small", 1) == series_uid(0, "small", 1)
    assert series_uid(0, "small", 1) != series_uid(1, "small", 1) != series_uid(0, "full", 1)
    for u in uids:
        assert len(u) <= 64 and all(part.isdigit() and (part == "0" or part[0] != "0") for part in u.split("."))


def test_mode_grids() -> None:
    rng = np.random.default_rng(0)
    small = make_grid("small", rng, 0.7, 1.25, 300)
    full = make_grid("full", rng, 0.7, 1.25, 300)
    assert small.shape_irc[1:] == (224, 224) and 100 <= small.shape_irc[0] <= 140
    assert 1.4 <= small.spacing_xyz[0] <= 1.6 and 2.0 <= small.spacing_xyz[2] <= 2.5
    assert full.shape_irc[1:] == (512, 512) and full.spacing_xyz == (0.7, 0.7, 1.25)
    assert 280 <= full.shape_irc[0] * 1.25 <= 360
    with pytest.raises(ValueError):
        make_grid("huge", rng, 0.7, 1.25, 300)


def test_rating_consensus() -> None:
    reads = [{"texture": 1, "calcification": 6}, {"texture": 2, "calcification": 3}, {"texture": 5, "calcification": 3}]
    assert consensus_texture(reads) == 2
    assert consensus_calcification(reads) == 3
    assert consensus_calcification(reads[:1] + [{"texture": 5, "calcification": 6}, reads[1]]) == 6


@pytest.mark.parametrize("mode", ["small", "full"])
def test_the_disk_size_bound_holds_every_grid_and_is_exact_at_full_resolution(mode: str) -> None:
    rng = np.random.default_rng(3)
    for dz, n in [(0.625, 560), (1.25, 300), (2.5, 90), (2.0, 200), (3.0, 40)]:
        bound = max_voxels(mode, dz, n)
        for _ in range(20):
            voxels = int(np.prod(make_grid(mode, rng, 0.7, dz, n).shape_irc))
            assert voxels == bound if mode == "full" else voxels <= bound
