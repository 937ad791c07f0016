"""What the demo and the training recipe share: running a bundle as a user types it, timing a stage.

Both run the documented commands (``python -m monai.bundle run ...``) in a subprocess rather
than calling the package directly, so the path they prove is the one a user takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_TRUSTED_CONFIG_WARNING = "ignore:parsing config_file:UserWarning"


def bundle_command(bundles: Path, dataset: Path, bundle: str, configs: Sequence[str], run_id: str,
                   overrides: Mapping[str, Any]) -> list[str]:
    """``python -m monai.bundle run RUN_ID --config_file ... --bundles_dir ... --dataset_dir ...``
    for a copy of the bundles: the copy's contract is used, and its models, runs and evals land in it."""
    files = [str(bundles / bundle / "configs" / name) for name in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id,
           "--config_file", files[0] if len(files) == 1 else repr(files),
           "--logging_file", str(bundles / bundle / "configs/logging.conf"),
           "--bundles_dir", str(bundles),
           "--dataset_dir", str(dataset)]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return cmd


def bundle_env() -> dict[str, str]:
    """The environment for a bundle run: MONAI warns on every run that a config may execute code;
    these configs are the project's own."""
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _TRUSTED_CONFIG_WARNING]))
    return {**os.environ, "PYTHONWARNINGS": warnings}


def run_bundle(bundles: Path, dataset: Path, bundle: str, configs: Sequence[str], run_id: str,
               overrides: Mapping[str, Any]) -> None:
    """Run one bundle command in the foreground; a failure raises ``CalledProcessError``."""
    cmd = bundle_command(bundles, dataset, bundle, configs, run_id, overrides)
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=bundle_env())


def start_bundle(bundles: Path, dataset: Path, bundle: str, configs: Sequence[str], run_id: str,
                 overrides: Mapping[str, Any], log: IO[str]) -> subprocess.Popen:
    """Start one bundle command in the background, its output to ``log``."""
    cmd = bundle_command(bundles, dataset, bundle, configs, run_id, overrides)
    print("$", " ".join(cmd), f"> {log.name}", flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=bundle_env())


def run_stage(title: str, stage: Callable[[], None]) -> float:
    """Run ``stage`` under a heading; return its wall seconds."""
    print(f"\n=== {title} ===", flush=True)
    start = time.perf_counter()
    stage()
    seconds = time.perf_counter() - start
    print(f"--- {title}: {seconds:.1f} s", flush=True)
    return seconds


def stale(output: Path, sources: Sequence[Path]) -> bool:
    """``output`` must be made again: it or a source is missing, or a source is newer than it."""
    return not output.is_file() or any(
        not s.is_file() or output.stat().st_mtime < s.stat().st_mtime for s in sources)
