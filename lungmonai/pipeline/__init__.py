"""End-to-end nodule analysis: CT in, nodules with P(nodule) and P(malignant) out.

``segment -> group -> classify -> malignancy``, as in the LUNA book's chapter 14, over the three
trained bundles. Entry points: :func:`analyze` (one CT or a folder, writes the reports),
:func:`analyze_ct` (in memory), :func:`evaluate_split` (FROC/CPM and the confusion table on
the split's val or test series).
"""

from lungmonai.pipeline.analysis import PipelineSettings, analyze_ct, pipeline_settings
from lungmonai.pipeline.models import PipelineModels, load_models
from lungmonai.pipeline.run import MissingDicomOutputs, UnreadableCTs, analyze
from lungmonai.pipeline.evaluation import evaluate_split

__all__ = ["MissingDicomOutputs", "PipelineModels", "PipelineSettings", "UnreadableCTs", "analyze", "analyze_ct", "evaluate_split", "load_models", "pipeline_settings"]
