"""The shared handler lists: the order every trained bundle relies on."""

from __future__ import annotations

import torch
from ignite.handlers import ProgressBar
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler, StatsHandler, TensorBoardStatsHandler, ValidationHandler

from lungmonai.engines import training_handlers, validation_handlers
from lungmonai.handlers import SamplesSeen
from lungmonai.handlers.checkpoint import ResumableCheckpoint
from torch.utils.data import DataLoader


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
                                 figures=[figure], resume="false", summary_writer=writer, progress_bars="true",
                                 validation=validation_handlers(ckpt_dir=tmp_path, network=net, progress_bars=False))

    kinds = [type(h) for h in handlers]
    # Schedule first; counters before validation (its figures plot against samples seen); the
    # resumable checkpoint after validation, so it saves what validation just scored.
    assert kinds == [LrScheduleHandler, SamplesSeen, ValidationHandler, ResumableCheckpoint, StatsHandler,
                     TensorBoardStatsHandler, _Figure, ProgressBar]
    checkpoint = handlers[3]
    assert checkpoint.path == tmp_path / "last.pt" and checkpoint.resume is False
    assert set(checkpoint.objects) == {"network", "optimizer", "lr_scheduler", "samples_seen", "best_model"}
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


class _Scripted(Metric):
    """A validation score that follows a script, one value per epoch."""

    def __init__(self, scores) -> None:
        self.scores = list(scores)
        super().__init__(output_transform=lambda output: (output["pred"], output["label"]))

    def reset(self) -> None:
        pass

    def update(self, output) -> None:
        pass

    def compute(self) -> float:
        return self.scores.pop(0)


def _run(tmp_path, epochs: int, scores, resume: bool) -> torch.nn.Module:
    """Train a tiny network for ``epochs`` through the bundles' handler lists, scored by ``scores``."""
    torch.manual_seed(len(scores))
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    items = [{"image": torch.randn(3), "label": torch.tensor(i % 2)} for i in range(4)]
    loader = DataLoader(items, batch_size=2)
    validation = validation_handlers(ckpt_dir=tmp_path, network=net, progress_bars=False)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=net, decollate=False,
        key_val_metric={"score": _Scripted(scores)}, val_handlers=validation)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=net, optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(), decollate=False,
        train_handlers=training_handlers(validator=evaluator, checkpoint_path=tmp_path / "last.pt",
                                         state={"network": net, "optimizer": optimizer}, resume=resume,
                                         progress_bars=False, validation=validation))
    trainer.run()
    return net


def test_a_resumed_run_keeps_the_better_best_model(tmp_path) -> None:
    _run(tmp_path, 1, [0.8], resume=False)
    best = (tmp_path / "model.pt").read_bytes()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["best_model"]["saved"][0][0] == 0.8

    _run(tmp_path, 2, [0.1], resume=True)  # epoch 2 scores worse: model.pt stays epoch 1's
    assert (tmp_path / "model.pt").read_bytes() == best
    assert torch.load(tmp_path / "last.pt", weights_only=True)["best_model"]["saved"][0][0] == 0.8

    net = _run(tmp_path, 3, [0.9], resume=True)  # epoch 3 scores better: it replaces model.pt
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(saved["weight"], net.state_dict()["weight"])


def test_a_deleted_best_model_is_written_again_on_resume(tmp_path) -> None:
    _run(tmp_path, 1, [0.8], resume=False)
    (tmp_path / "model.pt").unlink()
    _run(tmp_path, 2, [0.1], resume=True)
    assert (tmp_path / "model.pt").is_file()
