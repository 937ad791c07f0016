"""The nodule table: malignancy rule, axis order of centres, list formatting, filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lungmonai.io.volume import Geometry
from lungmonai.lidc import clusters as C
from lungmonai.lidc.malignancy import (
    TABLE_COLUMNS,
    format_ratings,
    ijk_to_irc,
    is_malignant,
    luna_like,
    nodule_centers_xyz,
    nodule_table_from_clustering,
    parse_ratings,
    read_nodule_table,
    write_nodule_table,
)


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ([4, 2, 4], True),
        ([4, 2, 4, 2], True),
        ([5, 5], True),
        ([4, 3, 3, 3], False),
        ([5], False),
        ([3, 3, 3, 3], False),
        ([1, 4, 1, 5], True),
        ([], False),
    ],
)
def test_is_malignant_needs_two_reads_at_least_4(ratings: list[int], expected: bool) -> None:
    assert is_malignant(ratings) is expected


def test_ratings_text_round_trip() -> None:
    assert format_ratings([4, 2, 4]) == "[4, 2, 4]"
    assert parse_ratings("[4, 2, 4]") == [4, 2, 4]
    assert parse_ratings([3]) == [3]
    with pytest.raises(ValueError):
        parse_ratings("4")


def test_ijk_to_irc_moves_slice_first() -> None:
    assert ijk_to_irc(np.array([10.0, 20.0, 3.0])).tolist() == [3.0, 10.0, 20.0]
    assert ijk_to_irc(np.array([[1, 2, 3], [4, 5, 6]])).tolist() == [[3, 1, 2], [6, 4, 5]]


def _single_read_table(scan) -> tuple[pd.DataFrame, object]:
    subset = C.cluster_scans(series_uids=[scan.series_instance_uid], cache_directory=Path("/nonexistent"))
    return nodule_table_from_clustering(subset), subset


def test_centre_axis_order_matches_boolean_mask_center_of_mass(sample_scans) -> None:
    """Our (slice, row, col) centre lands on the read's filled mask, whose CoM pylidc gives in (row, col, slice)."""
    scan = next(s for s in sample_scans if s.patient_id == "LIDC-IDRI-0001")
    table, subset = _single_read_table(scan)
    anns = {a.id: a for a in scan.annotations}
    checked = 0
    for _, row in table.iterrows():
        ids = [int(a) for a in row["annotation_ids"].split(";")]
        masks_com_irc = []
        for ann_id in ids:
            ann = anns[ann_id]
            mask = ann.boolean_mask()
            com_ijk = np.array(ndimage.center_of_mass(mask)) + ann.bbox_matrix()[:, 0]
            masks_com_irc.append(ijk_to_irc(com_ijk))
        center = row[["center_i", "center_r", "center_c"]].to_numpy(dtype=float)
        # The contour-point mean and the filled-mask centre differ by well under 2 voxels;
        # a wrong axis order would be off by tens to hundreds.
        assert np.abs(center - np.mean(masks_com_irc, axis=0)).max() < 2.0, (row["annotation_ids"], center)
        # The box (slice, row, col) contains the centre.
        low = row[["bbox_low_i", "bbox_low_r", "bbox_low_c"]].to_numpy(dtype=float)
        high = row[["bbox_high_i", "bbox_high_r", "bbox_high_c"]].to_numpy(dtype=float)
        assert np.all(low <= center) and np.all(center <= high)
        checked += 1
    assert checked == len(table) > 0
    # LIDC-IDRI-0001: z of the centre slice from pylidc's zvals agrees with center_z_mm.
    zvals = scan.slice_zvals
    for _, row in table.iterrows():
        assert np.interp(row["center_i"], np.arange(zvals.size), zvals) == pytest.approx(row["center_z_mm"], abs=scan.slice_spacing)


def test_table_columns_values_and_csv_round_trip(sample_scans, tmp_path: Path) -> None:
    scan = next(s for s in sample_scans if s.patient_id == "LIDC-IDRI-0001")
    table, subset = _single_read_table(scan)
    assert tuple(table.columns) == TABLE_COLUMNS
    clusters = scan.cluster_annotations(verbose=False)
    assert len(table) == len(clusters)
    for (_, row), cluster in zip(table.iterrows(), clusters):
        assert row["annotation_ids"] == ";".join(str(a.id) for a in cluster)
        assert row["n_reads"] == len(cluster)
        assert parse_ratings(row["malignancy_ratings"]) == [a.malignancy for a in cluster]
        assert row["spiculation_mean"] == pytest.approx(np.mean([a.spiculation for a in cluster]))
        assert row["diameter_mm"] == pytest.approx(np.mean([a.diameter for a in cluster]))
        assert row["is_malignant"] == is_malignant([a.malignancy for a in cluster])
        assert row["slice_thickness"] == scan.slice_thickness
        assert row["slice_spacing"] == pytest.approx(scan.slice_spacing)
    path = write_nodule_table(table, tmp_path / "t.csv")
    back = read_nodule_table(path)
    assert back["malignancy_ratings"].tolist() == [parse_ratings(v) for v in table["malignancy_ratings"]]
    assert back["annotation_ids"].tolist() == table["annotation_ids"].tolist()


def test_luna_like_filter() -> None:
    table = pd.DataFrame({"n_reads": [1, 3, 4, 3, 2], "slice_thickness": [1.0, 1.0, 2.5, 3.0, 1.25]})
    assert luna_like(table)["n_reads"].tolist() == [3, 4]


def test_centres_xyz_use_geometry_and_flag_z_mismatch() -> None:
    row = {c: 0.0 for c in ["center_i", "center_r", "center_c", "bbox_low_i", "bbox_low_r", "bbox_low_c", "bbox_high_i", "bbox_high_r", "bbox_high_c"]}
    row.update(center_i=10.0, center_r=100.0, center_c=200.0, bbox_low_i=8, bbox_low_r=90, bbox_low_c=190, bbox_high_i=12, bbox_high_r=110, bbox_high_c=210)
    table = pd.DataFrame([dict(row, lidc_series_uid="u", center_z_mm=-100.0 + 10 * 2.5)])
    geometry = Geometry(origin_xyz=[-150.0, -160.0, -100.0], spacing_xyz=[0.7, 0.7, 2.5])
    out = nodule_centers_xyz(table, {"u": geometry, "other": geometry})
    assert out[["center_x", "center_y", "center_z"]].iloc[0].tolist() == pytest.approx([-150 + 200 * 0.7, -160 + 100 * 0.7, -75.0])
    assert out["bbox_low_z"].iloc[0] == pytest.approx(-100 + 8 * 2.5)
    assert out["bbox_high_x"].iloc[0] == pytest.approx(-150 + 210 * 0.7)
    assert out["z_check_mm"].iloc[0] == pytest.approx(0.0)
    # A flipped slice axis keeps the box ordered (low <= high).
    flipped = Geometry(origin_xyz=[-150.0, -160.0, 0.0], spacing_xyz=[0.7, 0.7, 2.5], direction=np.diag([1.0, 1.0, -1.0]))
    out = nodule_centers_xyz(table, {"u": flipped})
    assert out["bbox_low_z"].iloc[0] < out["bbox_high_z"].iloc[0]
    assert nodule_centers_xyz(table, {}).empty
