"""A held-out evaluation set that shares no LIDC patient with the data models are developed on.

The split of a dataset is patient-level already, but its test part is small (14 CTs, 24
nodules in the demo's 100 series: a CPM interval 0.35 wide) and every stage's choices have
seen its neighbours. A held-out set is a second dataset, generated from the LIDC patients the
development dataset does not use, checked here from the two manifests rather than trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


def dataset_patients(dataset_dir: str | os.PathLike[str]) -> set[str]:
    """LIDC patients of an embedded dataset (from its ``manifest.json``)."""
    path = Path(dataset_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return {str(series["lidc"]["patient_id"]) for series in manifest["series"]}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; only a generated dataset names its LIDC patients") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a generator manifest ({type(error).__name__}: {error})") from None


def assert_patients_disjoint(development_dir: str | os.PathLike[str], heldout_dir: str | os.PathLike[str]) -> None:
    """Refuse a held-out set that shares a patient with the development dataset."""
    shared = sorted(dataset_patients(development_dir) & dataset_patients(heldout_dir))
    if shared:
        raise ValueError(f"{heldout_dir} shares {len(shared)} LIDC patients with {development_dir} "
                         f"(e.g. {', '.join(shared[:3])}): it is not held out")


def check_held_out(dataset_dir: str | os.PathLike[str]) -> str | None:
    """For a held-out set (its manifest names ``held_out_from``), verify that it still shares no
    patient with that development dataset; returns the development dataset's path, or None for
    a dataset that is not a held-out set (LUNA16 itself, or a development dataset)."""
    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        source = json.loads(path.read_text(encoding="utf-8")).get("held_out_from")
    except ValueError as error:
        raise ValueError(f"{path}: not a generator manifest ({error})") from None
    if not source:
        return None
    development = Path(source["dataset"])
    if not (development / MANIFEST).is_file():
        raise FileNotFoundError(f"{path}: held out from {development}, which is gone; its patients cannot be checked")
    assert_patients_disjoint(development, dataset_dir)
    return str(development)
