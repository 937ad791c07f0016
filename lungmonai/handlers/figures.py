"""TensorBoard pictures per epoch: P(positive) histograms by true class, ROC, augmented samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from ignite.engine import Engine, Events
from torch.utils.tensorboard import SummaryWriter

from lungmonai.plots import crop_grid_figure, roc_figure, save_figure


class ClassificationFiguresHandler:
    """Draws what ``EpochClassificationMetrics`` gathered under ``prefix`` at each epoch end.

    ``step`` maps the engine to the x value (samples seen); histograms show whether the two
    classes separate, which a single AUC number hides.
    """

    def __init__(
        self,
        summary_writer: SummaryWriter,
        prefix: str = "val",
        step: Callable[[Engine], int] | None = None,
        positive_name: str = "nodule",
    ) -> None:
        self.writer = summary_writer
        self.prefix = prefix
        self.step = step or (lambda engine: engine.state.epoch)
        self.positive_name = positive_name

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = getattr(engine.state, "classification_outputs", {}) or {}
        if self.prefix not in outputs:
            return
        prob, label = outputs[self.prefix]
        step = int(self.step(engine))
        tag = f"{self.prefix}/p_{self.positive_name}"
        bins = np.linspace(0, 1, 51)
        if (~label).any():
            self.writer.add_histogram(f"{tag}_neg", prob[~label], step, bins=bins)
        if label.any():
            self.writer.add_histogram(f"{tag}_pos", prob[label], step, bins=bins)
        if label.any() and (~label).any():
            fig = roc_figure({self.prefix: (prob, label)}, title=f"{self.prefix} ROC")
            self.writer.add_figure(f"{self.prefix}/roc", fig, step, close=True)
        self.writer.flush()


class AugmentationGridHandler:
    """Once per run, the first training batch as the network sees it (after augmentation).

    Written to TensorBoard and as a PNG beside the event files, so a user can check that the
    augmentation is plausible before waiting for a whole run.
    """

    def __init__(
        self, summary_writer: SummaryWriter, image_key: str = "image", label_key: str = "label", count: int = 16
    ) -> None:
        self.writer = summary_writer
        self.image_key = image_key
        self.label_key = label_key
        self.count = count

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=1), self)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        images = batch[self.image_key][: self.count].detach().cpu().float().numpy()
        labels = batch[self.label_key][: self.count].detach().cpu().numpy().ravel()
        fig = crop_grid_figure(images, labels)
        self.writer.add_figure("train/augmented_samples", fig, 0, close=False)
        save_figure(fig, Path(self.writer.log_dir) / "augmented_samples.png")
        plt.close(fig)
        self.writer.flush()
