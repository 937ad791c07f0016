"""The last-epoch checkpoint that lets a killed run continue where it stopped.

MONAI's CheckpointSaver names periodic checkpoints by epoch, so a resuming run would have to
guess the newest; this handler keeps exactly one file, replaced atomically every epoch, holding
everything a continuation needs (network, optimizer, scheduler, trainer epoch/iteration, samples
seen). Only rank 0 writes.

Checkpoints hold tensors and plain Python values only, and every load uses
``torch.load(weights_only=True)``: a checkpoint is data, and a crafted one must not be able to run
code when a run resumes or a model is loaded (an unrestricted unpickler executes whatever the file
names). :func:`load_weights` is the one place the package loads a ``.pt`` file.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.handlers import CheckpointSaver

from lungmonai.cache.atomic import atomic_open
from lungmonai.weights import check_plain, load_weights

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same directory, then rename over ``path``.

    ``obj`` must be tensors and plain values (:func:`check_plain`), so it loads back safely.
    """
    path = Path(path)
    check_plain(obj, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def unwrap(obj: Any) -> Any:
    """The module inside DistributedDataParallel/DataParallel, so checkpoints load anywhere."""
    if isinstance(obj, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        return obj.module
    return obj


GRAD_SCALER = "grad_scaler"
BEST_MODEL = "best_model"
# Written by later versions than some checkpoints: an older checkpoint still resumes without them.
_OPTIONAL = (GRAD_SCALER, BEST_MODEL)
_HORIZON_ATTRS = ("t_total", "warmup_steps", "total_steps", "_schedule_phases")


def _schedule_horizon(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """The attributes that fix how long a schedule runs (MONAI's warmup-cosine, one-cycle)."""
    return {k: scheduler.__dict__[k] for k in _HORIZON_ATTRS if k in scheduler.__dict__}


def _apply_current_lr(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Set the optimizer's learning rates to the schedule's value at its current step."""
    with warnings.catch_warnings():  # get_lr() outside step() warns; here it is the point
        warnings.simplefilter("ignore", UserWarning)
        lrs = [float(v) for v in scheduler.get_lr()]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


class BestModelScore:
    """The best model's score (and file) as resumable state, so a resumed run keeps the best model.

    Without it a resumed run's best-model saver starts empty, and the first epoch after the restart
    overwrites ``model.pt`` whatever its score. Saved as plain ``[score, filename]`` pairs; on
    load an entry whose file is gone is dropped, so that the next epoch writes a model again.
    """

    def __init__(self, saver: CheckpointSaver) -> None:
        # The saver's ignite Checkpoint holds the scores; MONAI makes it when the saver is built.
        self.checkpoint: Checkpoint = saver._key_metric_checkpoint

    def state_dict(self) -> dict[str, list[list[Any]]]:
        return {"saved": [[float(priority), str(filename)] for priority, filename in self.checkpoint._saved]}

    def load_state_dict(self, state: dict[str, list[list[Any]]]) -> None:
        checkpoint = self.checkpoint
        kept = [(float(priority), str(filename)) for priority, filename in state.get("saved", [])
                if self._written(checkpoint, str(filename))]
        checkpoint.load_state_dict({"_saved": kept})
        for priority, _ in kept:
            logger.info("best model so far kept: score %s", priority)

    @staticmethod
    def _written(checkpoint: Checkpoint, filename: str) -> bool:
        """Whether the saved best model is still on disk (MONAI's saver may fix its file name)."""
        handler = checkpoint.save_handler
        directory = getattr(handler, "dirname", None)
        if directory is None:
            return True
        return (Path(directory) / (getattr(handler, "filename", None) or filename)).is_file()


class ResumableCheckpoint:
    """Save ``objects`` to ``path`` after every epoch; with ``resume`` load them when the run starts.

    ``objects`` maps names to anything with ``state_dict``/``load_state_dict``; the trainer itself
    is added on ``attach`` so its epoch and iteration counters are restored too, and so is its
    mixed-precision GradScaler when it has one (a fresh scale would overflow or underflow the
    first steps after a resume). A checkpoint without one (written without AMP) still resumes.
    """

    def __init__(self, path: str | Path, objects: dict[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.objects = dict(objects)
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        self.objects.setdefault("trainer", engine)
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _with_scaler(self, engine: Engine) -> dict[str, Any]:
        """``objects`` plus the engine's GradScaler, looked up when used (set by the trainer)."""
        scaler = getattr(engine, "scaler", None)
        return self.objects if scaler is None else {**self.objects, GRAD_SCALER: scaler}

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        objects = self._with_scaler(engine)
        atomic_torch_save({name: unwrap(obj).state_dict() for name, obj in objects.items()}, self.path)

    def load(self, engine: Engine) -> None:
        if not self.resume:
            return
        if not self.path.is_file():
            logger.warning("resume asked but %s does not exist: starting from scratch", self.path)
            return
        state = load_weights(self.path)
        objects = self._with_scaler(engine)
        missing = [name for name in objects if name not in state and name not in _OPTIONAL]
        if missing:
            raise ValueError(f"{self.path}: checkpoint lacks {missing}; it was written by another bundle or by an "
                             "earlier version of this one (whose configuration had no such part): train afresh "
                             "with --resume false, or remove the file")
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        horizons = {name: _schedule_horizon(obj) for name, obj in objects.items()
                    if isinstance(obj, torch.optim.lr_scheduler.LRScheduler)}
        if GRAD_SCALER in objects and GRAD_SCALER not in state:
            logger.info("%s holds no AMP grad scaler: it starts from its initial scale", self.path)
        if BEST_MODEL in objects and BEST_MODEL not in state:
            logger.warning("%s holds no best score: the first resumed epoch replaces the best model", self.path)
        for name, obj in objects.items():
            if name in state:
                unwrap(obj).load_state_dict(state[name])
        for name, horizon in horizons.items():
            # A schedule's length is this run's (more epochs asked): the saved one would make a
            # cosine climb back up past its old end and one-cycle refuse to step.
            scheduler = self.objects[name]
            if _schedule_horizon(scheduler) != horizon:
                scheduler.__dict__.update(horizon)
                _apply_current_lr(scheduler)
        # A resumed run may be asked to go further than the one that wrote the checkpoint.
        engine.state.max_epochs = max(max_epochs or 0, engine.state.epoch)
        if epoch_length and engine.state.epoch_length != epoch_length:
            # A new batch size or epoch_samples: the epochs to come are this run's loader's
            # length, not the old run's (samples seen stays exact, it counts samples).
            logger.info("epoch length %d -> %d iterations (this run's loader)", engine.state.epoch_length, epoch_length)
            engine.state.epoch_length = epoch_length
            engine.state.iteration = engine.state.epoch * epoch_length
        logger.info("resumed from %s at epoch %d, iteration %d", self.path, engine.state.epoch, engine.state.iteration)
