"""Segment a whole CT: every slice's seven-slice window through the U-Net, batched.

``segment_ct`` is what the end-to-end pipeline calls; the bundle's inference config wraps it
with reading the CT and writing the probability and mask volumes as NIfTI on the CT's grid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lungmonai.inference.autocast import autocast_context
from lungmonai.io import read_ct
from lungmonai.io.discover import output_stem
from lungmonai.io.grid import from_grid, to_grid
from lungmonai.io.orient import from_lps, to_lps
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.segmentation.roi import lung_box
from lungmonai.segmentation.windows import batch_windows
from lungmonai.weights import load_weights


def scale_hu(hu: torch.Tensor, hu_window: Sequence[float] = (-1000.0, 1000.0)) -> torch.Tensor:
    """Clip to the window and map it to [-1, 1], as ``ScaleIntensityRanged`` does in training;
    ``hu`` itself is left as it is."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    return (hu.float().clamp(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0


@torch.inference_mode()
def segment_ct(
    ct: CTVolume,
    network: nn.Module,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    context: int = 3,
    hu_window: Sequence[float] = (-1000.0, 1000.0),
    divisible: int = 8,
    restrict_to_lungs: bool = True,
    precision: str = "fp32",
) -> np.ndarray:
    """Per-voxel nodule probability, float32 (I, R, C) on the CT's grid.

    With ``restrict_to_lungs`` only the lung bounding box (:func:`lung_box`) is run through the
    network and everything outside reads 0; windows still take their neighbour slices from
    the whole volume. The network must output one logit channel; it is put in eval mode.
    ``precision`` as in :func:`lungmonai.inference.autocast.autocast_dtype`.
    """
    hu = ct.hu
    depth, rows, cols = hu.shape
    box = lung_box(hu, ct.geometry.spacing_irc) if restrict_to_lungs else (slice(0, depth), slice(0, rows), slice(0, cols))
    region = hu[:, box[1], box[2]]
    height, width = region.shape[1:]
    pad_h, pad_w = (-height) % divisible, (-width) % divisible
    out = np.zeros(hu.shape, dtype=np.float32)
    network.eval()
    device = torch.device(device)
    for start in range(box[0].start, box[0].stop, batch_size):
        indices = np.arange(start, min(start + batch_size, box[0].stop))
        windows = torch.from_numpy(np.ascontiguousarray(batch_windows(region, indices, context)))
        image = scale_hu(windows.to(device), hu_window)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=-1.0)
        with autocast_context(precision, device):
            logits = network(image)
        prob = torch.sigmoid(logits.float())[:, 0, :height, :width]
        out[indices[0] : indices[-1] + 1, box[1], box[2]] = prob.cpu().numpy()
    return out


def write_like(array: np.ndarray, geometry: Geometry, path: str | os.PathLike[str]) -> Path:
    """Write an (I, R, C) array with the CT's origin, spacing and direction (any ITK format by
    extension), so ``read_ct`` / SimpleITK read back the same geometry. Atomic: temp then rename."""
    import SimpleITK as sitk  # only for writing volumes: training and analysis never need it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetOrigin(tuple(float(v) for v in geometry.origin_xyz))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing_xyz))
    image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    # Written under its final name in a temp directory beside it, then moved: a MetaImage
    # header names its data file, so the pair must keep their names; header moved last.
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        sitk.WriteImage(image, str(tmp_dir / path.name), useCompression=path.name.endswith(".gz"))
        for produced in sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name):
            os.replace(produced, path.parent / produced.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def segment_ct_file(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    network: nn.Module,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    threshold: float = 0.5,
    context: int = 3,
    hu_window: Sequence[float] = (-1000.0, 1000.0),
    restrict_to_lungs: bool = True,
    grid_spacing_xyz: Sequence[float] | None = None,
) -> dict[str, Path]:
    """Read a CT (any format ``read_ct`` reads), write ``<stem>_prob.nii.gz`` (float32) and
    ``<stem>_mask.nii.gz`` (uint8, probability >= ``threshold``) into ``output_dir``, on the
    CT's own grid. It is segmented on the working grid ``grid_spacing_xyz`` (None: its own)."""
    ct = read_ct(input_path)  # an empty --input is refused there
    native = to_lps(ct)  # axial slices first, as trained; the outputs go back on the CT's own grid
    analysed = to_grid(native, grid_spacing_xyz)
    prob = segment_ct(analysed, network, device, batch_size, context, hu_window, restrict_to_lungs=restrict_to_lungs)
    prob = from_lps(from_grid(prob, analysed.geometry, native.shape_irc, native.geometry, order=1), ct.geometry)
    stem = output_stem(input_path)
    out = Path(output_dir)
    return {
        "probability": write_like(prob, ct.geometry, out / f"{stem}_prob.nii.gz"),
        "mask": write_like((prob >= threshold).astype(np.uint8), ct.geometry, out / f"{stem}_mask.nii.gz"),
    }


def load_segmenter(
    bundle_root: str | os.PathLike[str],
    ckpt_path: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict]:
    """The bundle's network (from its ``inference.json``) with ``ckpt_path``'s weights (None:
    untrained, for timing), in eval mode, and the settings ``segment_ct`` needs
    (``context``, ``hu_window``, ``threshold``, ``batch_size``) and the working grid
    (``grid_spacing_xyz``) the pipeline puts a CT on."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(bundle_root) / "configs" / "inference.json"))
    parser["bundles_dir"] = str(Path(bundle_root).resolve().parent)
    parser["bundle_root"] = str(bundle_root)
    network = parser.get_parsed_content("network_def").to(device)
    if ckpt_path is not None:
        network.load_state_dict(load_weights(ckpt_path, map_location=device))
    settings = {key: parser.get_parsed_content(key)
                for key in ("context", "hu_window", "threshold", "batch_size", "grid_spacing_xyz")}
    return network.eval(), settings
