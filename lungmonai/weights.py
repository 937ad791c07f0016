"""Loading ``.pt`` files safely: tensors and plain Python values only, never code.

``torch.load`` with an unrestricted unpickler runs whatever callable a file names, so a crafted
checkpoint, model or cache file would execute on ``--resume`` or on analysis. Every load in the
package goes through :func:`load_weights` (``weights_only=True``), and every save is checked by
:func:`check_plain` so that what is written can always be read back that way.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(ValueError):
    """A ``.pt`` file holds more than tensors and plain values; the message names the file."""


_PLAIN_SCALARS = (str, int, float, bool, bytes, type(None), torch.Tensor, torch.dtype,
                  torch.device, torch.Size)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Refuse anything a ``weights_only`` load could not read back, before it is written.

    Saving an object (a lambda in a schedule, a handler) would give a file that no longer loads
    under ``weights_only=True``; failing at save time names the culprit instead.
    """
    if isinstance(obj, _PLAIN_SCALARS):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            check_plain(key, where)
            check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            check_plain(value, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {type(obj).__name__}: checkpoints hold only tensors and plain values")


def load_weights(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` of tensors and plain values only: a file that names code is refused, unrun."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        first = re.sub(r"\x1b\[[0-9;]*m", "", first)  # torch's message carries terminal bold
        raise UnsafeCheckpointError(
            f"{path}: not a plain checkpoint (tensors and plain values only); refused to load it, "
            f"since loading it could run code ({first})"
        ) from None


def load_into(network: torch.nn.Module, path: str | Path, map_location: Any = "cpu") -> torch.nn.Module:
    """A bundle's weights (a plain state_dict, or ``{"model": state_dict}``) loaded strictly into
    ``network`` (a bare module, not a DataParallel / DDP wrapper). The caller checks that ``path`` exists, with
    the hint its own stage gives."""
    state = load_weights(path, map_location=map_location)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    network.load_state_dict(state)
    return network


def start_from(network: torch.nn.Module, path: str | Path | None) -> torch.nn.Module:
    """``network`` with the weights at ``path`` (a training's starting point), or as it is when
    ``path`` is None or empty: what a bundle's ``init_weights`` setting does."""
    if not path:
        return network
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: init_weights not found (the weights a training starts from)")
    return load_into(network, path)
