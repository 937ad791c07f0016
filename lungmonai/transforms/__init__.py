"""MONAI dictionary transforms the bundles need that MONAI lacks."""

from lungmonai.transforms.inplane_affine import RandInPlaneAffined
from lungmonai.transforms.noise import RandGaussianNoiseTorchd

__all__ = ["RandGaussianNoiseTorchd", "RandInPlaneAffined"]
