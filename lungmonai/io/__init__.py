"""CT readers: LUNA16 MetaImage (.mhd/.raw/.zraw), NIfTI and DICOM series into one type."""

from lungmonai.io.discover import find_series
from lungmonai.io.errors import CTReadError
from lungmonai.io.reader import read_ct
from lungmonai.io.volume import CTVolume, Geometry

__all__ = ["CTReadError", "CTVolume", "Geometry", "find_series", "read_ct"]
