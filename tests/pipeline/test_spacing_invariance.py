"""One chest at three scanner resolutions gives the same findings: the pipeline analyses every CT
on the contract's working grid, whatever its own voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lungmonai.classification import LunaModel, ct_crop_transform
from lungmonai.config import contract, find_bundles
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.pipeline import PipelineModels, PipelineSettings, analyze_ct

NODULES_XYZ_MM = {4.0: (-20.0, -18.0, -14.0), 8.0: (18.0, -10.0, 0.0), 15.0: (-4.0, 20.0, 12.0)}
EXTENT_MM = np.array([96.0, 96.0, 60.0])  # x, y, z
ORIGIN_XYZ = -EXTENT_MM / 2


def _chest(spacing_xyz: tuple[float, float, float]) -> CTVolume:
    """Air-like lung (-850 HU) with solid spheres (60 HU) at fixed patient positions, sampled at
    ``spacing_xyz``: what three scanners would record of one chest."""
    spacing = np.asarray(spacing_xyz)
    shape_xyz = np.floor(EXTENT_MM / spacing).astype(int) + 1
    axes = [ORIGIN_XYZ[a] + spacing[a] * np.arange(shape_xyz[a]) for a in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    hu = np.full(z.shape, -850, np.int16)
    for diameter, (cx, cy, cz) in NODULES_XYZ_MM.items():
        hu[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= (diameter / 2) ** 2] = 60
    return CTVolume(hu, Geometry(ORIGIN_XYZ, spacing), Path(f"chest_{spacing[0]}.mhd"), "chest")


class _ThresholdSegmenter(nn.Module):
    """A one-layer segmenter with set weights: a voxel of the centre slice is nodule when its
    scaled HU is above -0.4 (-400 HU). Deterministic, so any difference between the three
    analyses comes from the pipeline's handling of their voxels."""

    def __init__(self, context: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * context + 1, 1, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, context] = 20.0
            self.conv.bias.fill_(8.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def models() -> PipelineModels:
    settings = contract(find_bundles())
    torch.manual_seed(0)
    classifier = LunaModel(1, 2, spatial_size=tuple(settings["crop_shape"])).eval()
    seg = {"context": settings["seg_context"], "hu_window": settings["hu_window"], "threshold": 0.5, "batch_size": 8,
           "grid_spacing_xyz": settings["grid_spacing_xyz"]}
    return PipelineModels(_ThresholdSegmenter(seg["context"]).eval(), seg, classifier,
                          ct_crop_transform(settings["crop_shape"], settings["hu_window"]), None, torch.device("cpu"))


def _findings(models: PipelineModels, spacing_xyz: tuple[float, float, float]) -> np.ndarray:
    settings = PipelineSettings(flip_tta_top=0, precision="fp32", nodule_threshold=0.0)
    found = analyze_ct(_chest(spacing_xyz), models, settings).candidates
    return found[["center_x", "center_y", "center_z", "p_nodule"]].to_numpy()


@pytest.mark.parametrize("spacing_xyz", [(0.6, 0.6, 0.625), (0.8, 0.8, 1.25), (0.98, 0.98, 2.5)])
def test_three_scanner_resolutions_give_the_same_findings(models: PipelineModels, spacing_xyz) -> None:
    reference = _findings(models, (1.5, 1.5, 2.0))  # the working grid itself: nothing resampled
    found = _findings(models, spacing_xyz)

    assert len(reference) == len(NODULES_XYZ_MM)  # one finding per nodule, 4 to 15 mm
    assert len(found) == len(reference), found
    for center in NODULES_XYZ_MM.values():
        ref = reference[np.argmin(np.linalg.norm(reference[:, :3] - center, axis=1))]
        got = found[np.argmin(np.linalg.norm(found[:, :3] - center, axis=1))]
        assert np.linalg.norm(got[:3] - ref[:3]) <= 1.5, (center, got, ref)
        assert abs(got[3] - ref[3]) <= 0.1, (center, got, ref)
