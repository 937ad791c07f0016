"""Join onto LUNA16 annotations on a synthetic geometry, and the book-format reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungmonai.geometry import irc_to_xyz
from lungmonai.io.volume import Geometry
from lungmonai.lidc.join import (
    MALIGNANCY_COLUMNS,
    join_annotations_with_malignancy,
    match_nodules,
    read_annotations_with_malignancy,
    write_annotations_with_malignancy,
)


def _nodule(uid: str, irc: tuple[float, float, float], diameter: float, ratings: list[int]) -> dict:
    i, r, c = irc
    half = diameter / 2 / 0.7
    return {
        "lidc_series_uid": uid,
        "center_i": i, "center_r": r, "center_c": c,
        "bbox_low_i": i - 2, "bbox_low_r": r - half, "bbox_low_c": c - half,
        "bbox_high_i": i + 2, "bbox_high_r": r + half, "bbox_high_c": c + half,
        "center_z_mm": np.nan,
        "diameter_mm": diameter,
        "malignancy_ratings": str(ratings),
        "is_malignant": sum(v >= 4 for v in ratings) >= 2,
        "n_reads": len(ratings),
    }


GEOMETRY = Geometry(origin_xyz=[-180.0, -170.0, -320.0], spacing_xyz=[0.7, 0.7, 1.25])


def _annotation(uid: str, irc: tuple[float, float, float], diameter: float, shift_mm=(0.0, 0.0, 0.0)) -> dict:
    x, y, z = irc_to_xyz(np.array(irc), GEOMETRY) + np.array(shift_mm)
    return {"seriesuid": uid, "coordX": x, "coordY": y, "coordZ": z, "diameter_mm": diameter}


def test_join_recovers_matches_one_to_one() -> None:
    nodules = pd.DataFrame(
        [
            _nodule("s1", (40, 200, 300), 10.0, [4, 4, 5]),
            _nodule("s1", (42, 210, 300), 6.0, [2, 3, 2]),  # 7 mm from the first: close neighbours
            _nodule("s1", (120, 100, 100), 5.0, [3, 4, 3, 2]),
            _nodule("s2", (10, 10, 10), 8.0, [5, 5, 5]),  # series without geometry: not joined
        ]
    )
    annotations = pd.DataFrame(
        [
            _annotation("s1", (120, 100, 100), 5.2, shift_mm=(1.0, -0.5, 0.5)),
            _annotation("s1", (42, 210, 300), 6.1, shift_mm=(0.3, 0.0, 0.0)),
            _annotation("s1", (40, 200, 300), 9.5, shift_mm=(-0.5, 0.5, 0.0)),
            _annotation("s1", (200, 400, 400), 4.0),  # no cluster near: dropped
            _annotation("s2", (10, 10, 10), 8.0),
        ]
    )
    joined = join_annotations_with_malignancy(annotations, nodules, {"s1": GEOMETRY})
    assert list(joined.columns) == list(MALIGNANCY_COLUMNS)
    assert len(joined) == 3
    # annotations.csv order kept, each annotation with its own cluster (not the bigger neighbour).
    assert joined["diameter_mm"].tolist() == [5.2, 6.1, 9.5]
    assert joined["mal_details"].tolist() == ["[3, 4, 3, 2]", "[2, 3, 2]", "[4, 4, 5]"]
    assert joined["mal_bool"].tolist() == [False, False, True]
    assert joined["len_mal_details"].tolist() == [4, 3, 3]
    assert (joined["bboxLowX"] < joined["coordX"]).all() and (joined["coordX"] < joined["bboxHighX"]).all()
    assert (joined["bboxLowZ"] < joined["bboxHighZ"]).all()


def test_match_is_one_to_one_nearest_first() -> None:
    nodules = pd.DataFrame(
        {"lidc_series_uid": ["s"], "center_x": [0.0], "center_y": [0.0], "center_z": [0.0], "diameter_mm": [10.0]}
    )
    annotations = pd.DataFrame(
        {"seriesuid": ["s", "s"], "coordX": [3.0, 1.0], "coordY": [0.0, 0.0], "coordZ": [0.0, 0.0], "diameter_mm": [10.0, 10.0]}
    )
    pairs = match_nodules(annotations, nodules)
    assert pairs[["annotation_index", "nodule_index"]].values.tolist() == [[1, 0]]
    far = annotations.assign(coordX=[6.0, 7.0])
    assert match_nodules(far, nodules).empty


def test_written_file_reads_back(tmp_path: Path) -> None:
    nodules = pd.DataFrame([_nodule("s1", (40, 200, 300), 10.0, [4, 2, 4])])
    annotations = pd.DataFrame([_annotation("s1", (40, 200, 300), 10.0)])
    joined = join_annotations_with_malignancy(annotations, nodules, {"s1": GEOMETRY})
    path = write_annotations_with_malignancy(joined, tmp_path / "annotations_with_malignancy.csv")
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(MALIGNANCY_COLUMNS)
    assert ',True,"[4, 2, 4]",' in text
    back = read_annotations_with_malignancy(path)
    assert back["mal_bool"].tolist() == [True] and back["mal_details"].tolist() == [[4, 2, 4]]


def test_reader_errors_name_file_and_columns(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_annotations_with_malignancy(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0,5\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing columns \['mal_bool', 'mal_details'"):
        read_annotations_with_malignancy(bad)
    header = ",".join(MALIGNANCY_COLUMNS)
    bad.write_text(header + '\n1.2,0,0,0,5,maybe,"[4]",0,0,0,1,1,1,1\n')
    with pytest.raises(ValueError, match="bad.csv: mal_bool"):
        read_annotations_with_malignancy(bad)
    bad.write_text(header + '\n1.2,0,0,0,5,True,"[4, 4]",0,0,0,1,1,1,3\n')
    with pytest.raises(ValueError, match="len_mal_details"):
        read_annotations_with_malignancy(bad)


def test_reference_file_counts(reference_dir: Path) -> None:
    table = read_annotations_with_malignancy(reference_dir / "annotations_with_malignancy.csv")
    assert len(table) == 1182 and table["seriesuid"].nunique() == 600
    assert int(table["mal_bool"].sum()) == 378 and int((~table["mal_bool"]).sum()) == 804
    assert all(len(d) == n for d, n in zip(table["mal_details"], table["len_mal_details"]))
    assert (table["mal_bool"] == table["mal_details"].map(lambda d: sum(v >= 4 for v in d) >= 2)).all()


def test_reference_z_agrees_with_lidc_clusters(reference_dir: Path) -> None:
    """Without CT images only z can be checked: every reference nodule of a few series has a
    cluster whose LIDC slice z is within two slices and whose ratings are the same."""
    from lungmonai.lidc.clusters import cluster_scans
    from lungmonai.lidc.malignancy import nodule_table_from_clustering

    table = read_annotations_with_malignancy(reference_dir / "annotations_with_malignancy.csv")
    uids = sorted(table["seriesuid"].unique())[:8]
    nodules = nodule_table_from_clustering(cluster_scans(series_uids=uids, cache_directory=tmp_cache_dir()))
    for _, ref in table[table["seriesuid"].isin(uids)].iterrows():
        rows = nodules[nodules["lidc_series_uid"] == ref["seriesuid"]]
        near = rows[(rows["center_z_mm"] - ref["coordZ"]).abs() <= 2 * rows["slice_spacing"].abs()]
        assert any(sorted(eval(r)) == sorted(ref["mal_details"]) for r in near["malignancy_ratings"]), ref["seriesuid"]


def tmp_cache_dir() -> Path:
    """Serve from the real cache when it is current (fast), else cluster just these scans."""
    from lungmonai.lidc.clusters import cache_dir

    return cache_dir()
