"""A tiny prepared LUNA16-format dataset shared by the bundle tests, and a bundle runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_luna_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 series of 40x64x64 with spheres as nodules, prepared (table, split, cache)."""
    from lungmonai.tables.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("luna_tiny")
    write_luna_dataset(root, n_series=10, shape_irc=(40, 64, 64), nodules_per_series=(2, 1, 1, 0),
                       negatives_per_series=12, noise_hu=30)
    prepare_dataset(root, workers=1)
    return root


def run_bundle(run_id: str, configs: list[str], overrides: dict[str, object], timeout: int = 300,
               launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` as a user would, from the repository root."""
    paths = [str(REPO / c) for c in configs]
    config_arg = paths[0] if len(paths) == 1 else repr(paths)
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", "run", run_id, "--config_file", config_arg]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUNGMONAI_PROGRESS": "0"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
