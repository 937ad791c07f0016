"""Import pylidc 0.2.3 on current numpy/setuptools without touching site-packages or $HOME.

pylidc 0.2.3 needs three things today's stack no longer gives it:
- ``pkg_resources`` (gone from recent setuptools) only to locate its sqlite file;
- the aliases ``np.int``, ``np.float``, ``np.bool`` removed in numpy 1.24;
- a ``~/.pylidcrc`` it writes on first use of DICOM paths; we never let it, the DICOM
  directory comes from ``LUNGMONAI_LIDC_DICOM`` when a user has the images.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from types import ModuleType

_NUMPY_ALIASES = {"int": int, "float": float, "bool": bool, "object": object}


def _pylidc_dir() -> Path:
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pylidc is not installed: pip install pylidc==0.2.3")
    return Path(list(spec.submodule_search_locations)[0])


def _install_pkg_resources_shim() -> None:
    try:
        import pkg_resources  # noqa: F401

        return
    except ImportError:
        pass
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        if package != "pylidc":
            raise ImportError(f"pkg_resources shim only serves pylidc, not {package}")
        return str(_pylidc_dir() / resource)

    shim.resource_filename = resource_filename  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


def _install_numpy_aliases() -> None:
    import numpy as np

    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def database_path() -> Path:
    """The sqlite file pylidc ships with its annotations."""
    return _pylidc_dir() / "pylidc.sqlite"


def import_pylidc() -> ModuleType:
    """Return the ``pylidc`` module, patched to work offline on the current stack."""
    if "pylidc" in sys.modules and getattr(sys.modules["pylidc"], "_lungmonai_patched", False):
        return sys.modules["pylidc"]
    _install_pkg_resources_shim()
    _install_numpy_aliases()
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import pylidc
    import pylidc.Scan  # noqa: F401  (the module; the package re-exports a class of the same name)

    scan_module = sys.modules["pylidc.Scan"]

    def dicom_dir_from_env() -> str:
        return os.environ.get("LUNGMONAI_LIDC_DICOM", "")

    # Replaces the function that writes a template ~/.pylidcrc into the user's home.
    scan_module._get_dicom_file_path_from_config_file = dicom_dir_from_env
    pylidc._lungmonai_patched = True  # type: ignore[attr-defined]
    return pylidc
