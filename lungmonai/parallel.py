"""The start method of the project's process pools: ``fork`` where it is safe, else ``spawn``.

``fork`` is the cheap one on Linux (the workers share the parent's imported modules: spawn
re-imports torch, pylidc and scipy in each, about 2 s). But a child forked from a process that
runs other threads inherits their locks and not the threads: a cache build that followed
the recipe's hard-negative mining (torch inference in the same process, which leaves torch's
OpenMP worker threads behind) hung for good, its forked workers asleep in their first torch
call. So ``fork`` only while the process has a single OS thread (``/proc/self/task``, which also
sees threads that ``threading`` does not: OpenMP's, tqdm's monitor); ``spawn`` otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.context import BaseContext


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no procfs: assume the worst
        return 2


def process_context() -> BaseContext:
    """``fork`` on Linux in a single-threaded process, ``spawn`` everywhere else."""
    safe = sys.platform.startswith("linux") and _os_threads() == 1
    return multiprocessing.get_context("fork" if safe else "spawn")
