"""Clustering equals pylidc's own, the subset API, and the on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lungmonai.lidc import clusters as C

SAMPLE = ["LIDC-IDRI-0001", "LIDC-IDRI-0003", "LIDC-IDRI-0068", "LIDC-IDRI-0129", "LIDC-IDRI-0314"]


def test_fast_clustering_equals_pylidc_default(sample_scans) -> None:
    assert len(sample_scans) >= len(SAMPLE)
    for scan in sample_scans:
        # pylidc's own default clustering, called literally.
        expected = [[a.id for a in cluster] for cluster in scan.cluster_annotations(verbose=False)]
        assert [[a.id for a in cluster] for cluster in C.cluster_scan(scan)] == expected, scan.patient_id


def test_cluster_scans_subset_without_cache(tmp_path: Path) -> None:
    result = C.cluster_scans(patient_ids=["LIDC-IDRI-0001"], cache_directory=tmp_path)
    assert [s["patient_id"] for s in result.scans] == ["LIDC-IDRI-0001"]
    uid = result.scans[0]["series_uid"]
    by_uid = C.cluster_scans(series_uids=[uid], cache_directory=tmp_path)
    assert by_uid.scans == result.scans
    ids = sorted(a for cluster in result.scans[0]["clusters"] for a in cluster)
    assert ids == sorted(result.annotations)
    assert list(tmp_path.iterdir()) == []  # a subset never writes the cache


def test_cache_round_trip_and_staleness(tmp_path: Path) -> None:
    key = C.cache_key()
    path = C.cache_path(key, tmp_path)
    subset = C.cluster_scans(patient_ids=["LIDC-IDRI-0001", "LIDC-IDRI-0003"], cache_directory=tmp_path)
    C._write_cache(path, subset)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = C._read_cache(path, key)
    assert again is not None and again.scans == subset.scans and again.annotations == subset.annotations
    # cluster_scans is served from the (current) cache: the subset of the subset.
    served = C.cluster_scans(patient_ids=["LIDC-IDRI-0003"], cache_directory=tmp_path)
    assert [s["patient_id"] for s in served.scans] == ["LIDC-IDRI-0003"]
    # Another database identity or other parameters make the entry stale.
    stale = dict(key, db_mtime_ns=key["db_mtime_ns"] + 1)
    assert C._read_cache(path, stale) is None
    assert C.cache_path(stale, tmp_path) != path
    path.write_text("{not json", encoding="utf-8")
    assert C._read_cache(path, key) is None


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNGMONAI_CACHE", str(tmp_path / "c"))
    assert C.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LUNGMONAI_CACHE")
    assert C.cache_dir() == Path.home() / ".cache" / "lungmonai"


@pytest.mark.slow
def test_full_database_reproduces_book_figures() -> None:
    """All 1,018 scans: 6,859 reads in 2,651 clusters; ~1,190 LUNA16-like nodules, ~383 malignant.

    Uses the cache in $LUNGMONAI_CACHE (~/.cache/lungmonai): ~1 min the first time on 2 cores,
    under a second after.
    """
    from lungmonai.lidc.malignancy import luna_like, nodule_table_from_clustering
    from lungmonai.metrics.baseline import diameter_auc

    clustering = C.cluster_all(workers=2, show_progress=False)
    assert (clustering.n_scans, clustering.n_reads, clustering.n_clusters) == (1018, 6859, 2651)
    table = nodule_table_from_clustering(clustering)
    filtered = luna_like(table)
    assert len(filtered) == 1192
    assert int(filtered["is_malignant"].sum()) == 383
    assert diameter_auc(filtered, label_column="is_malignant") == pytest.approx(0.925, abs=0.005)
    json.dumps(clustering.key)  # the key is what the cache file name is derived from
