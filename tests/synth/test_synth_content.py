"""Image content: tissues in plausible HU, nodules inside lung, determinism."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np

from lungmonai.io import read_ct
from lungmonai.synth import generate_dataset
from lungmonai.synth.tubes import segment_box

N_COMPARE = 2


def test_rendered_series_equals_written_files(dataset: Path, manifest: dict, rendered_first) -> None:
    s0 = manifest["series"][0]
    assert rendered_first.uid == s0["series_uid"]
    np.testing.assert_array_equal(read_ct(dataset / s0["file"]).hu, rendered_first.ct)


def test_nodule_masks_inside_lung_and_disjoint(rendered_first) -> None:
    rs = rendered_first
    labels, lung = rs.labels, rs.chest.lung
    assert labels.max() == len(rs.placements)
    assert np.all(lung[labels > 0])
    for k, pl in enumerate(rs.placements, start=1):
        assert int((labels == k).sum()) == int(pl.mask.sum())  # no overlap between nodules


def test_tissue_hu_statistics(rendered_first) -> None:
    rs = rendered_first
    ct, lung, labels = rs.ct, rs.chest.lung, rs.labels
    parenchyma = ct[lung & (labels == 0) & (rs.chest.vessel_occupancy < 0.05)]
    assert -910 < parenchyma.mean() < -790
    corner = ct[:, :8, :8]
    assert abs(corner.mean() + 1000) < 15 and 12 < corner.std() < 45
    # Around each rib axis (marrow ~230 inside a ~750 HU cortex) the densest voxel is bone.
    ribs = rs.chest.structures.rib_outer
    mid = (ribs.p0 + ribs.p1) / 2
    from lungmonai.geometry import xyz_to_irc

    irc = xyz_to_irc(mid, rs.grid.geometry)
    ok = np.all((irc >= 0) & (irc < np.array(ct.shape)), axis=1)
    irc = np.clip(irc[ok], 2, np.array(ct.shape) - 3)
    peaks = [ct[i - 1 : i + 2, r - 2 : r + 3, c - 2 : c + 3].max() for i, r, c in irc]
    assert np.median(peaks) > 400
    # Solid nodules (texture >= 4, no calcification) are soft tissue at their core.
    for pl in rs.placements:
        box = ct[pl.box]
        assert box[pl.mask].mean() > -750  # denser than lung whatever the texture
    assert segment_box(rs.grid, mid[0], mid[0], 1.0) is not None


def test_same_seed_same_bytes(dataset: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(a, N_COMPARE, mode="small", seed=3, workers=1, montage=False)
    generate_dataset(b, N_COMPARE, mode="small", seed=3, workers=2, montage=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) >= 4 * N_COMPARE + 4
    for rel in files:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel
