"""One line instead of a traceback for the errors a user fixes, shared by every command.

A user error is one about a file or path the user gave: an ``OSError`` (a missing file, an
``--out`` that is a directory), a ``CTReadError``, or a ``ValueError`` whose message starts with
a path (the package's convention for bad tables, splits and checkpoints: ``"<file>: <problem>"``).
Those print ``<prog>: error: <file>: <problem>`` and exit 1. Anything else is a bug and keeps its
traceback, which is what a bug report needs.

Commands the package does not own (``python -m monai.bundle run``) get the same through
:func:`install_hook`, the first expression of each bundle's ``initialize``: MONAI re-raises an
expression's error as ``RuntimeError(...) from error`` and a DataLoader worker's as a
``RuntimeError`` holding its traceback as text, so the hook looks through both for the user error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

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
    if isinstance(error, LookupError) and _is_cache_miss(type(error)) and _names_a_path(str(error)):
        return " ".join(str(error).split())
    if isinstance(error, ValueError) and _names_a_path(str(error)):
        return " ".join(str(error).split())  # one line, even for a message that wraps
    return None


def _is_cache_miss(kind: type) -> bool:
    from lungmonai.cache.crops import CacheMissError  # the cache imports the readers: not at import time

    return issubclass(kind, CacheMissError)


_RAISED_LINE = re.compile(r"^(lungmonai(?:\.\w+)+)\.(\w+): (.+)$", re.MULTILINE)


def _user_error_in_text(text: str) -> str | None:
    """The first ``lungmonai.<module>.<Error>: <file>: <problem>`` line of a traceback kept as text
    (what a DataLoader worker's error becomes in the main process) whose error is a user error."""
    for module, name, message in _RAISED_LINE.findall(text):
        kind = getattr(sys.modules.get(module), name, None)  # only classes this process has loaded
        if not isinstance(kind, type) or not _names_a_path(message):
            continue
        if issubclass(kind, (ValueError, CTReadError)) or _is_cache_miss(kind):
            return " ".join(message.split())
    return None


def user_error_in(error: BaseException) -> str | None:
    """:func:`user_error_line` of ``error`` or of the user error it wraps, None for a bug.

    Wrapped means re-raised as a ``RuntimeError`` from it (a MONAI config expression, a MONAI
    transform) or carried as text in a ``RuntimeError`` (a DataLoader worker's error). Only those
    wrappers are looked through: an error raised while handling another is a bug.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        line = user_error_line(current)
        if line is not None:
            return line
        if type(current) is not RuntimeError:
            return None
        line = _user_error_in_text(str(current))
        if line is not None:
            return line
        current = current.__cause__
    return None


def _prog() -> str:
    """The command's name: ``monai.bundle`` for ``python -m monai.bundle``, else the script's."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return spec.name.removesuffix(".__main__")
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"


def install_hook(prog: str | None = None) -> None:
    """From now on a user error that ends the program prints ``<prog>: error: <file>: <problem>``
    on stderr (exit status 1) instead of a traceback; other errors keep the hook they had.
    Calling it again changes nothing."""
    previous = sys.excepthook
    if getattr(previous, "lungmonai_user_errors", False):
        return

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        line = user_error_in(error) if isinstance(error, Exception) else None
        if line is None:
            previous(kind, error, traceback)
        else:
            print(f"{prog or _prog()}: error: {line}", file=sys.stderr, flush=True)

    hook.lungmonai_user_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


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
