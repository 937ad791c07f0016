"""Helpers that bundle configs call on command-line values, and the bundles folder's rule.

``python -m monai.bundle run ... --augment_flip false`` hands the config the *string* "false"
(fire only turns Python literals such as ``False`` into booleans), and a non-empty string is
true, so a switch typed the way most users type it would silently stay on. Every boolean
switch in the bundles goes through :func:`flag`.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def flag(value: object) -> bool:
    """``True``/``False`` from a bool, 0/1, or a string such as "true", "False", "off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected a boolean switch (true/false), got {value!r}")


def compute_threads(requested: int, loader_workers: int) -> int:
    """Threads for the training process: ``requested`` when > 0, else the CPU cores this process
    may use minus one per loader worker (at least 1).

    Torch's default takes every core, so on a small machine its threads and the loader's workers
    fight over the same cores and each training step waits for both; leaving the workers their
    cores made the segmentation step 1.4x faster on 2 cores.
    """
    if int(requested) > 0:
        return int(requested)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - max(0, int(loader_workers)))


def bundles_root(bundles_dir: str | os.PathLike[str]) -> Path:
    """``bundles_dir`` resolved, refused unless it is named ``bundles``: the configs find each
    other by ``bundles/<name>/...`` paths from the folder above, so a copy must keep the name."""
    bundles = Path(bundles_dir).resolve()
    if bundles.name != "bundles":
        raise ValueError(f"{bundles}: must be a directory named bundles (the configs find each other "
                         "under a folder named 'bundles', as bundles/<name>/...)")
    return bundles
