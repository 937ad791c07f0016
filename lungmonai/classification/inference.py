"""Score candidate centres of one CT with a crop classifier (nodule or malignancy)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lungmonai.cache.atomic import atomic_write_csv
from lungmonai.inference.autocast import autocast_context
from lungmonai.io import read_ct
from lungmonai.io.extent import Extent, inside
from lungmonai.io.grid import to_grid
from lungmonai.io.orient import to_lps
from lungmonai.io.volume import CTVolume
from lungmonai.weights import load_weights

logger = logging.getLogger(__name__)

_XYZ_COLUMNS = [("coordX", "coordY", "coordZ"), ("center_x", "center_y", "center_z")]


def read_centers(path: str | Path) -> pd.DataFrame:
    """A CSV of candidate centres in patient mm: LUNA16's ``coordX,coordY,coordZ`` or ``center_x..z``."""
    if not str(path).strip():
        raise FileNotFoundError("no candidate CSV given: pass --candidates PATH (seriesuid,coordX,coordY,coordZ rows)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: candidate CSV not found")
    frame = pd.read_csv(path)
    for columns in _XYZ_COLUMNS:
        if set(columns) <= set(frame.columns):
            return frame.rename(columns=dict(zip(columns, ("center_x", "center_y", "center_z"))))
    raise ValueError(f"{path}: needs columns coordX,coordY,coordZ (or center_x,center_y,center_z), has {list(frame.columns)}")


FLIP_DIMS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))
"""The eight flips of a (batch, channel, I, R, C) crop: the symmetries the classifier is
trained to ignore (``RandFlipd`` on every axis), so averaging over them only removes noise."""


NO_FLIP = FLIP_DIMS[:1]
"""The crop as is: one forward pass."""

OTHER_FLIPS = FLIP_DIMS[1:]
"""The seven flips a second look adds to an unflipped pass (see :func:`complete_flip_average`)."""


def flip_averaged_logits(
    network: nn.Module, images: torch.Tensor, flips: tuple[tuple[int, ...], ...] = FLIP_DIMS
) -> torch.Tensor:
    """Float32 logits averaged over ``flips`` (one forward pass each; ``()`` is the crop as is)."""
    return torch.stack([network(images.flip(dims) if dims else images).float() for dims in flips]).mean(0)


def crop_images(ct: CTVolume, centers_xyz: np.ndarray, transform: Callable) -> torch.Tensor:
    """(N, C, I, R, C) float32 crops, one per centre; ``transform`` turns ``{"ct", "center_xyz"}``
    into ``{"image"}``. Cut once per CT and shared by every network that reads the same crop
    (the nodule classifier, its second look, the malignancy model)."""
    images = [torch.as_tensor(transform({"ct": ct, "center_xyz": np.asarray(c, dtype=np.float64)})["image"])
              for c in np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)]
    if not images:
        return torch.zeros(0)
    return torch.stack(images).as_subclass(torch.Tensor).float()


@torch.no_grad()
def predict_logits(
    network: nn.Module,
    images: torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    flips: tuple[tuple[int, ...], ...] = NO_FLIP,
    precision: str = "fp32",
) -> torch.Tensor:
    """(N, 2) float32 logits for :func:`crop_images`' crops, averaged over ``flips``.

    ``flips``: :data:`FLIP_DIMS` averages the crop's eight flips. An under-trained classifier
    scores a vessel seen end-on very differently depending on orientation; on the embedded
    dataset the pipeline's second look (:data:`lungmonai.pipeline.PipelineSettings.flip_tta_top`)
    raised CPM by 0.08-0.12. ``precision``: as :func:`lungmonai.inference.autocast.autocast_dtype`
    ("auto" runs bfloat16 where the CPU or GPU does it natively); the logits come back in
    float32 either way."""
    if len(images) == 0:
        return torch.zeros(0, 2)
    network.eval()
    out = []
    for batch in images.split(batch_size):
        batch = batch.to(device)
        with autocast_context(precision, device):
            out.append(flip_averaged_logits(network, batch, flips).cpu())
    return torch.cat(out)


def complete_flip_average(unflipped: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """The :data:`FLIP_DIMS` average from logits already computed on the unflipped crops and the
    average over the seven other flips, so a second look costs 7 passes, not 8."""
    return (unflipped + others * len(OTHER_FLIPS)) / len(FLIP_DIMS)


def class1_probability(logits: torch.Tensor) -> np.ndarray:
    """P(class 1) from (N, 2) logits."""
    return torch.softmax(logits.float(), dim=1)[:, 1].numpy()


def check_centers_inside(frame: pd.DataFrame, extent: Extent, candidates_csv: str | Path, ct_path: str | Path) -> None:
    """Refuse centres outside the CT, naming the CSV's line: a crop there is padding only, and a
    score for it would be a confident-looking number about a point that is not in the scan."""
    centers = frame[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
    outside = np.flatnonzero(~inside(centers, extent))
    if not len(outside):
        return
    first = outside[0]
    xyz = ", ".join(f"{v:.1f}" for v in centers[first])
    raise ValueError(f"{candidates_csv}: line {int(frame.index[first]) + 2}: centre ({xyz}) mm lies outside "
                     f"the CT {ct_path} ({extent.describe()}); {len(outside)} row(s) outside")


def score_candidates_file(
    ct_path: str | Path,
    candidates_csv: str | Path,
    output_csv: str | Path,
    network: nn.Module,
    transform: Callable,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    column: str = "p_nodule",
    grid_spacing_xyz: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Read a CT and its candidate centres, write them back with ``column`` = P(class 1), atomically.
    The crops are cut on the working grid ``grid_spacing_xyz`` (None: the CT's own voxels).

    Rows of the CSV that name another series (a LUNA16-style file covering many CTs) are skipped;
    a centre of this series outside the CT is a ``ValueError`` naming the CSV and its line.
    """
    frame = read_centers(candidates_csv)  # before the CT: a missing CSV is found in a millisecond
    native = read_ct(ct_path)
    extent = Extent.of(native)  # the scan's own voxels: the grid's box rounds to whole grid voxels
    ct = to_grid(to_lps(native), grid_spacing_xyz)  # the layout and grid the network was trained on; centres stay in patient mm
    if "seriesuid" in frame.columns:
        frame = frame[frame["seriesuid"].astype(str) == ct.series_uid]
        if frame.empty:  # a CT without nodules in an annotations file, or the wrong file: say which
            logger.warning("%s: no row names series %r (the CT %s): the output has no rows",
                           candidates_csv, ct.series_uid, ct_path)
    check_centers_inside(frame, extent, candidates_csv, ct_path)
    centers = frame[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
    out = frame.copy()
    if "seriesuid" not in out.columns:
        out.insert(0, "seriesuid", ct.series_uid)
    out[column] = class1_probability(predict_logits(network, crop_images(ct, centers, transform), device, batch_size))
    out = out.rename(columns={"center_x": "coordX", "center_y": "coordY", "center_z": "coordZ"})
    atomic_write_csv(output_csv, out, index=False)
    return out


def load_network(network: nn.Module, ckpt_path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """``network`` with the bundle's trained weights, on ``device``, in eval mode.

    A missing file is the usual first-run mistake, so the error names the training command.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        bundle = ckpt_path.parent.parent
        raise FileNotFoundError(
            f"{ckpt_path}: no trained weights; train them with "
            f"`python -m monai.bundle run training --config_file {bundle}/configs/train.json` (or `make demo`)"
        )
    state = load_weights(ckpt_path, map_location=device)
    network.load_state_dict(state)
    return network.to(device).eval()
