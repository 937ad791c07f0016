"""Networks MONAI lacks: the LUNA book's 3D nodule classifier."""

from lungmonai.networks.luna_model import LunaBlock, LunaModel

__all__ = ["LunaBlock", "LunaModel"]
