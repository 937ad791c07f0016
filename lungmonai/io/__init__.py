"""CT readers: LUNA16 MetaImage (.mhd/.raw/.zraw), NIfTI and DICOM series into one type."""

from lungmonai.io.volume import CTVolume, Geometry

__all__ = ["CTVolume", "Geometry"]
