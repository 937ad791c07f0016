"""Checkpoints trained with the code of *Deep Learning with PyTorch* (part 2), as bundles.

:class:`BookSegUNet` is the book's segmentation network (selectable as the contract's
``networks.segmenter``); :func:`import_book_checkpoint` maps a book ``.state`` file onto the
project's networks and writes a bundles folder (``lungmonai import-book-checkpoint``).
"""

from lungmonai.book.checkpoint import (
    STAGES,
    classifier_key_map,
    fold_hu_scaling,
    import_book_checkpoint,
    map_book_state,
    read_book_checkpoint,
    segmenter_key_map,
)
from lungmonai.book.segnet import BookSegUNet

__all__ = [
    "STAGES",
    "BookSegUNet",
    "classifier_key_map",
    "fold_hu_scaling",
    "import_book_checkpoint",
    "map_book_state",
    "read_book_checkpoint",
    "segmenter_key_map",
]
