"""One progress bar for every long loop, so that all of them show a count, a rate and an ETA.

Long loops (cache builds, dataset checks, training epochs) run for minutes to hours; a bar
with an ETA is the cheapest way to tell a slow run from a stuck one. Set the environment
variable ``LUNGMONAI_PROGRESS=0`` to silence every bar (CI logs, tests).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

# tqdm's monitor thread only corrects bars whose refresh interval has gone stale; a second
# thread would make every process pool started under a bar spawn its workers instead of
# forking them (lungmonai.parallel), re-importing torch in each.
tqdm.monitor_interval = 0

# elapsed<remaining is tqdm's ETA; keep it in every bar even when the total is unknown.
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def progress_enabled() -> bool:
    """Bars are on unless ``LUNGMONAI_PROGRESS`` is set to 0/false/no/off."""
    return os.environ.get("LUNGMONAI_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "working",
    unit: str = "it",
    leave: bool = True,
    disable: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """Wrap ``iterable`` (or make a manual bar with ``total``) in a tqdm bar with an ETA.

    Returns the tqdm object, which iterates like ``iterable`` and also supports
    ``update(n)`` / ``set_postfix`` for loops driven by futures.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable is None:
        disable = not progress_enabled()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        disable=disable,
        file=kwargs.pop("file", sys.stderr),
        mininterval=kwargs.pop("mininterval", 0.5),
        dynamic_ncols=True,
        bar_format=None if total is None else _BAR_FORMAT,
        **kwargs,
    )
