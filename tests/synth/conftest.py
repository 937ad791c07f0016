"""One small generated dataset shared by the synth tests (generation dominates their time)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lungmonai.synth import generate_dataset
from lungmonai.synth.lidc_nodules import select_sources
from lungmonai.synth.series import render_series

N_SERIES = 3
SEED = 0


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "luna"
    generate_dataset(out, N_SERIES, mode="small", seed=SEED, neg_ratio=10.0, workers=2)
    return out


@pytest.fixture(scope="session")
def manifest(dataset: Path) -> dict:
    return json.loads((dataset / "manifest.json").read_text())


@pytest.fixture(scope="session")
def annotations(dataset: Path) -> pd.DataFrame:
    return pd.read_csv(dataset / "annotations.csv")


@pytest.fixture(scope="session")
def rendered_first(manifest: dict):  # noqa: ANN201
    """Series 0 rendered in memory again (same seed): gives the lung mask the files lack."""
    source = select_sources(N_SERIES, SEED)[0]
    return render_series(source, 0, "small", SEED, 10.0)
