"""Fixtures shared across test packages."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import write_luna_dataset

REPO = Path(__file__).resolve().parents[1]
TEST_GRID = [1.5, 1.5, 2.0]  # the spacing write_luna_dataset's CTs have
_BUNDLES_ENV = "LUNGMONAI_BUNDLES"
_before: dict[str, str | None] = {}


def tests_bundles() -> Path:
    """The bundles every test that names no bundles folder runs with (``LUNGMONAI_BUNDLES``)."""
    return Path(os.environ[_BUNDLES_ENV])


def pytest_configure(config: pytest.Config) -> None:
    """Point ``LUNGMONAI_BUNDLES`` (which subprocesses inherit, and modules read at import) at a
    copy of the repository's bundles whose working grid is the tests' CTs' own spacing.

    The tests' CTs are tiny, at 1.5 x 1.5 x 2 mm: on that grid a test's voxels are its CT's
    voxels, so what a test expects can be written down whatever grid the shipped weights use;
    the shipped grid is tested by the tests that read the repository's bundles by path (layout,
    shipped weights, the demo and the recipe).
    """
    copy = Path(tempfile.mkdtemp(prefix="lungmonai_test_bundles_")) / "bundles"
    shutil.copytree(REPO / "bundles", copy, ignore=shutil.ignore_patterns("runs", "__pycache__", "hard_negatives"))
    settings = json.loads((copy / "contract.json").read_text())
    settings["grid_spacing_xyz"] = TEST_GRID
    (copy / "contract.json").write_text(json.dumps(settings, indent=4))
    for metadata in copy.glob("*/configs/metadata.json"):
        record = json.loads(metadata.read_text())
        record["grid_spacing_xyz"] = TEST_GRID
        metadata.write_text(json.dumps(record, indent=4))
    _before[_BUNDLES_ENV] = os.environ.get(_BUNDLES_ENV)
    os.environ[_BUNDLES_ENV] = str(copy)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _BUNDLES_ENV not in _before:
        return
    shutil.rmtree(Path(os.environ[_BUNDLES_ENV]).parent, ignore_errors=True)
    if _before[_BUNDLES_ENV] is None:
        os.environ.pop(_BUNDLES_ENV, None)
    else:
        os.environ[_BUNDLES_ENV] = _before[_BUNDLES_ENV]


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 series of 40x64x64 with spheres as nodules, prepared (table, split, cache)."""
    from lungmonai.tables.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("luna_tiny")
    write_luna_dataset(root, n_series=10, shape_irc=(40, 64, 64), nodules_per_series=(2, 1, 1, 0),
                       negatives_per_series=12, noise_hu=30)
    prepare_dataset(root, workers=1)
    return root
