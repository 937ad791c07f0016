"""The shared handler lists: the order every trained bundle relies on."""

from __future__ import annotations

import torch
from ignite.handlers import ProgressBar
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler, StatsHandler, TensorBoardStatsHandler, ValidationHandler

from lungmonai.engines import training_handlers, validation_handlers
from lungmonai.handlers import SamplesSeen
from lungmonai.handlers.checkpoint import ResumableCheckpoint


class _Figure:
    def attach(self, engine) -> None:  # pragma: no cover - never attached here
        pass


def test_training_handlers_keep_the_order_the_bundles_rely_on(tmp_path) -> None:
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    seen, figure = SamplesSeen(), _Figure()
    writer = torch.utils.tensorboard.SummaryWriter(str(tmp_path))

    handlers = training_handlers(validator=None, checkpoint_path=tmp_path / "last.pt", lr_scheduler=scheduler,
                                 state={"network": net, "optimizer": optimizer, "lr_scheduler": scheduler, "samples_seen": seen},
                                 figures=[figure], resume="false", summary_writer=writer, progress_bars="true")

    kinds = [type(h) for h in handlers]
    # Schedule first; counters before validation (its figures plot against samples seen); the
    # resumable checkpoint after validation, so it saves what validation just scored.
    assert kinds == [LrScheduleHandler, SamplesSeen, ValidationHandler, ResumableCheckpoint, StatsHandler,
                     TensorBoardStatsHandler, _Figure, ProgressBar]
    checkpoint = handlers[3]
    assert checkpoint.path == tmp_path / "last.pt" and checkpoint.resume is False
    assert set(checkpoint.objects) == {"network", "optimizer", "lr_scheduler", "samples_seen"}
    writer.close()


def test_other_ranks_get_no_statistics_figures_or_bars(tmp_path) -> None:
    handlers = training_handlers(validator=None, checkpoint_path=tmp_path / "last.pt", state={"samples_seen": SamplesSeen()},
                                 figures=[_Figure()], is_main_process=False)
    assert [type(h) for h in handlers] == [SamplesSeen, ValidationHandler, ResumableCheckpoint]


def test_validation_saves_the_best_model_only_when_training(tmp_path) -> None:
    net = torch.nn.Linear(2, 2)
    first, figure = _Figure(), _Figure()
    during_training = validation_handlers(ckpt_dir=tmp_path, network=net, first=[first], figures=[figure], progress_bars=False)
    assert [type(h) for h in during_training] == [_Figure, StatsHandler, _Figure, CheckpointSaver]
    assert during_training[0] is first and during_training[2] is figure

    standalone = validation_handlers(ckpt_dir=None, network=net, load_path=tmp_path / "model.pt", progress_bars=True, desc="evaluate")
    assert [type(h) for h in standalone] == [CheckpointLoader, StatsHandler, ProgressBar]
