"""Shared fixtures for the LIDC tests: the reference tables and a few eagerly loaded scans."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE_DIR = (REPO / ".." / "shared" / "luna16_reference").resolve()

# A handful of scans with close or many reads: LIDC-IDRI-0001 .. 0005 and a few later ones.
SAMPLE_PATIENTS = ["LIDC-IDRI-0001", "LIDC-IDRI-0003", "LIDC-IDRI-0068", "LIDC-IDRI-0129", "LIDC-IDRI-0314"]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "annotations_with_malignancy.csv").is_file():
        pytest.skip(f"real LUNA16 reference tables not found at {REFERENCE_DIR} (the shared/ directory beside the repo)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def sample_scans():
    """Eagerly loaded sample scans, alive for the whole session (closed after)."""
    from lungmonai.lidc.clusters import loaded_scans

    with loaded_scans(patient_ids=SAMPLE_PATIENTS) as scans:
        yield scans
