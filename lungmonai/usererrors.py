"""One line instead of a traceback for the errors a user fixes, shared by every command.

A user error is one about a file or path the user gave: an ``OSError`` (a missing file, an
``--out`` that is a directory), a ``CTReadError``, or a ``ValueError`` whose message starts with
a path (the package's convention for bad tables, splits and checkpoints: ``"<file>: <problem>"``).
Those print ``<prog>: error: <file>: <problem>`` and exit 1. Anything else is a bug and keeps its
traceback, which is what a bug report needs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from lungmonai.io.errors import CTReadError


def _names_a_path(message: str) -> bool:
    """Whether ``message`` starts with ``<path>: ``, a path that exists or whose folder does."""
    head, sep, _ = message.partition(": ")
    if not sep or not head or "\n" in head:
        return False
    path = Path(head.split(" (from ")[0])
    return path.exists() or (os.sep in head and path.parent.is_dir())


def user_error_line(error: BaseException) -> str | None:
    """``"<file>: <problem>"`` for a user error, None for a bug."""
    if isinstance(error, OSError):
        if error.filename is None:
            return str(error) or type(error).__name__
        problem = error.strerror or type(error).__name__
        other = f" -> {error.filename2}" if error.filename2 is not None else ""
        return f"{error.filename}{other}: {problem}"
    if isinstance(error, CTReadError):
        return str(error)
    if isinstance(error, ValueError) and _names_a_path(str(error)):
        return " ".join(str(error).split())  # one line, even for a message that wraps
    return None


def run_command(prog: str, main: Callable[[], int]) -> int:
    """Run ``main``; a user error prints one line on stderr and gives exit status 1."""
    try:
        return main()
    except (OSError, ValueError) as error:
        line = user_error_line(error)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 1
