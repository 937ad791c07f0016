"""MONAI dictionary transforms the bundles need that MONAI lacks."""

from lungmonai.transforms.candidate_crop import CropCandidated, LoadCandidateCropd
from lungmonai.transforms.inplane_affine import RandInPlaneAffined
from lungmonai.transforms.noise import RandGaussianNoiseTorchd

__all__ = ["CropCandidated", "LoadCandidateCropd", "RandGaussianNoiseTorchd", "RandInPlaneAffined"]
