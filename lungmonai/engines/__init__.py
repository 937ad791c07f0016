"""The training scaffolding every trained bundle shares, written once.

A bundle's ``train.json`` keeps what is particular to its stage (data, network, loss, metric,
the figures it draws); the handler lists around ``SupervisedTrainer`` and ``SupervisedEvaluator``
(resume, best-model checkpoint, validation, statistics, TensorBoard, progress bars) come from
:func:`training_handlers` and :func:`validation_handlers`, the loaders from
:func:`training_loader` and :func:`evaluation_loader`, and the multi-process set-up from
:mod:`lungmonai.engines.distributed`. MONAI's config resolves no file relative to the config
that names it, so shared JSON could only be reached by a path from the working directory; code
in the package is reachable from any directory and any copy of the bundles.
"""

from lungmonai.engines.handlers import default_device, training_handlers, validation_handlers
from lungmonai.engines.loaders import evaluation_loader, training_loader

__all__ = ["default_device", "evaluation_loader", "training_handlers", "training_loader", "validation_handlers"]
