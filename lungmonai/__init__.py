"""lungmonai: lung nodule detection and malignancy estimation in chest CT, built on MONAI."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__version__ = "0.1.0"


def __getattr__(name: str) -> ModuleType:
    """``lungmonai.<submodule>`` imported on first use, so a bundle config's expression such as
    ``$lungmonai.usererrors.install_hook()`` needs no import line of its own."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
