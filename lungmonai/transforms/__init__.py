"""MONAI dictionary transforms the bundles need that MONAI lacks."""

from lungmonai.transforms.candidate_crop import CropCandidated, LoadCandidateCropd

__all__ = ["CropCandidated", "LoadCandidateCropd"]
