"""The three trained networks the analysis needs, loaded from their bundles' inference configs.

Each bundle's ``inference.json`` stays the one source of its network definition, weights path
and crop preprocessing; this module only reads them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lungmonai.config import find_bundles
from lungmonai.malignancy.size_fusion import load_fusion
from lungmonai.segmentation import load_segmenter

logger = logging.getLogger(__name__)


@dataclass
class PipelineModels:
    segmenter: nn.Module
    seg_settings: dict
    classifier: nn.Module
    # One crop for both crop networks: the malignancy bundle's preprocessing is the classifier's
    # (its inference.json references it), so the pipeline cuts each CT's crops once.
    crop_transform: Callable
    malignancy: nn.Module | None
    device: torch.device
    # Nodule type and calcification for Lung-RADS (lungmonai.nodule_type): plain JSON, no network.
    nodule_type: Any = None
    # The blend of P(malignant) with the measured diameter chosen on the validation nodules
    # (lungmonai.malignancy.size_fusion); None: P(malignant) is the image model's alone.
    size_fusion: dict[str, Any] | None = None


def _crop_classifier(bundle_root: Path, device: torch.device) -> tuple[nn.Module, Callable]:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_root / "configs" / "inference.json"))
    parser["bundles_dir"] = str(bundle_root.parent)
    parser["bundle_root"] = str(bundle_root)
    parser["device"] = f"$torch.device('{device}')"
    return parser.get_parsed_content("network"), parser.get_parsed_content("preprocessing")


def _require(path: Path, bundle: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no trained weights; train them with `python -m monai.bundle run training "
            f"--config_file {path.parent.parent / 'configs/train.json'}` (or `make demo`)"
        )
    return path


def load_models(
    bundles_dir: str | os.PathLike[str] | None = None, device: str | torch.device | None = None, with_malignancy: bool = True
) -> PipelineModels:
    """Segmenter, nodule classifier and (when trained) malignancy model from ``bundles_dir``
    (None: ``LUNGMONAI_BUNDLES`` or the installed bundles, see :func:`lungmonai.config.find_bundles`),
    with the malignancy bundle's size fusion when the validation chose one (``configs/size_fusion.json``)."""
    device = torch.device(device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    bundles = find_bundles(bundles_dir)
    seg_root = bundles / "nodule_seg"
    segmenter, seg_settings = load_segmenter(seg_root, _require(seg_root / "models/model.pt", "nodule_seg"), device)
    _require(bundles / "nodule_cls/models/model.pt", "nodule_cls")
    classifier, crop_transform = _crop_classifier(bundles / "nodule_cls", device)
    malignancy, size_fusion = None, None
    mal_root = bundles / "nodule_malignancy"
    if with_malignancy and (mal_root / "models/model.pt").is_file():
        malignancy, _ = _crop_classifier(mal_root, device)
        size_fusion = load_fusion(bundles)
    elif with_malignancy:
        logger.warning("%s: no malignancy model; P(malignant) is left empty", mal_root / "models/model.pt")
    nodule_type = None
    if (bundles / "nodule_type").is_dir():
        from lungmonai.nodule_type import load_default_model

        nodule_type = load_default_model(bundles)
    return PipelineModels(segmenter, seg_settings, classifier, crop_transform, malignancy, device, nodule_type, size_fusion)
