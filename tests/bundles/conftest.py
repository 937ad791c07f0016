"""Run bundles through `python -m monai.bundle` as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def run_bundle(run_id: str, configs: list[str], overrides: dict[str, object], timeout: int = 300,
               launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` as a user would, from the repository root."""
    paths = [str(REPO / c) for c in configs]
    config_arg = paths[0] if len(paths) == 1 else repr(paths)
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", "run", run_id, "--config_file", config_arg]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUNGMONAI_PROGRESS": "0"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
