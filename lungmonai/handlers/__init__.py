"""ignite handlers that compute, log and draw what the bundles report every epoch."""

from lungmonai.handlers.classification_metrics import EpochClassificationMetrics
from lungmonai.handlers.figures import AugmentationGridHandler, ClassificationFiguresHandler
from lungmonai.handlers.samples_seen import SamplesSeen

__all__ = ["AugmentationGridHandler", "ClassificationFiguresHandler", "EpochClassificationMetrics", "SamplesSeen"]
