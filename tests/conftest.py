"""Fixtures shared across test packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_luna_dataset


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 series of 40x64x64 with spheres as nodules, prepared (table, split, cache)."""
    from lungmonai.tables.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("luna_tiny")
    write_luna_dataset(root, n_series=10, shape_irc=(40, 64, 64), nodules_per_series=(2, 1, 1, 0),
                       negatives_per_series=12, noise_hu=30)
    prepare_dataset(root, workers=1)
    return root
