"""Nodule segmentation (LUNA step 2): a 2D U-Net over seven-slice windows marks voxels that
may belong to a nodule, tuned for recall; the classifier removes false positives later.

Public entry points for the end-to-end pipeline: :func:`segment_ct` (probabilities for a
whole CT) and :func:`load_segmenter` (the trained network from the bundle).
"""

from lungmonai.segmentation.inference import load_segmenter, segment_ct, segment_ct_file, write_like
from lungmonai.segmentation.metrics import NoduleTouches, nodule_recall, voxel_figures

__all__ = ["NoduleTouches", "load_segmenter", "nodule_recall", "segment_ct", "segment_ct_file", "voxel_figures", "write_like"]
