"""Helpers that bundle configs call: command-line switches, and where the bundles and their contract are.

``python -m monai.bundle run ... --augment_flip false`` hands the config the *string* "false"
(fire only turns Python literals such as ``False`` into booleans), and a non-empty string is
true, so a switch typed the way most users type it would silently stay on. Every boolean
switch in the bundles goes through :func:`flag`.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

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


def loader_workers(concurrent: int = 1) -> int:
    """Data-loader workers for one of ``concurrent`` trainings sharing this machine, 1 to 8: on a
    CPU half of its share of the cores (the other half computes the steps), with a GPU all but one.

    Measured on the embedded dataset: one core prepares ~400 classifier crops or segmentation
    windows a second, while a 2-core CPU trains on ~40 crops a second, so one worker keeps a CPU
    step fed and only a GPU step needs many.
    """
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    share = max(1, cores // max(1, int(concurrent)))
    return max(1, min(8, share - 1 if torch.cuda.is_available() else share // 2))


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


BUNDLES_ENV = "LUNGMONAI_BUNDLES"
CONTRACT = "contract.json"


def find_bundles(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The bundles folder: ``explicit`` (a ``--bundles`` argument), else the folder named by the
    ``LUNGMONAI_BUNDLES`` environment variable, else the bundles installed with the package.

    The installed ones are package data (``lungmonai/bundles``, which in a source checkout links to
    the repository's ``bundles/``), so a wheel installed anywhere finds its configs and weights
    without a working directory or a path relative to the source tree. This is every config's
    default ``bundles_dir``.
    """
    if explicit not in (None, ""):
        source, chosen = "--bundles", Path(explicit)
    elif os.environ.get(BUNDLES_ENV):
        source, chosen = BUNDLES_ENV, Path(os.environ[BUNDLES_ENV])
    else:
        source, chosen = "the installed package", Path(str(resources.files("lungmonai") / "bundles"))
    if not (chosen / CONTRACT).is_file():
        raise FileNotFoundError(f"{chosen} (from {source}): not a bundles folder, it has no {CONTRACT}")
    return chosen.resolve()


WEIGHTS_AND_RUNS = ("models", "runs", "eval", "output", "__pycache__", "*.tmp", "size_fusion.json")
"""What a copy of the bundles' configs leaves behind: the weights, what training and evaluation
wrote, and what was fitted to the weights (the malignancy bundle's size fusion, which
recalibrates one model's output)."""


def copy_configs(source: Path, out: Path) -> None:
    """``source``'s bundles, configs and docs only, into ``out``: the start of a bundles folder
    whose weights come from elsewhere (a training, an imported checkpoint)."""
    import shutil

    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*WEIGHTS_AND_RUNS))


@lru_cache(maxsize=None)
def _read_contract(path: Path, mtime_ns: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def contract(bundles_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings the stages agree on (HU window, crop shape, network definitions, pipeline
    settings), from ``bundles_dir/contract.json``: one file for all the bundles of a folder, so
    that a copy of the bundles carries its own. Every config reads it through its
    ``bundles_dir`` (``--bundles_dir COPY`` switches a run to a copy); ``bundle_root`` only says
    where that bundle's weights, runs and evaluations are."""
    path = Path(bundles_dir).resolve() / CONTRACT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {CONTRACT}; {bundles_dir} is not a bundles folder")
    return copy.deepcopy(_read_contract(path, path.stat().st_mtime_ns))


def network(settings: dict[str, Any], name: str) -> Any:
    """A new instance of network ``name`` of a :func:`contract` (a MONAI component definition),
    so that training, evaluation, inference, ``ckpt_export`` and ``verify_net_in_out`` all build
    the same one."""
    from monai.bundle import ConfigParser

    if name not in settings["networks"]:
        raise KeyError(f"{name!r}: no such network in the contract (it has {sorted(settings['networks'])})")
    return ConfigParser(copy.deepcopy(settings)).get_parsed_content(f"networks#{name}", lazy=False)
