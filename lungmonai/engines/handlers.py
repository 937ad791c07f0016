"""The handler lists of the trained bundles' engines: the same order and settings in every stage.

Order matters and is kept here once: the learning-rate schedule steps first; stateful counters
(samples seen, unfreezing) run before validation so that its figures see this epoch's counts;
the resumable checkpoint runs after validation so that it holds the best score validation just
saw; the progress bar comes last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import ProgressBar
from monai.handlers import (
    CheckpointLoader,
    CheckpointSaver,
    LrScheduleHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)

from lungmonai.config import flag
from lungmonai.handlers.checkpoint import BEST_MODEL, BestModelScore, ResumableCheckpoint


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def _reporting(
    summary_writer: Any, samples_seen: Any, is_main_process: bool, progress_bars: Any, desc: str, loss: bool
) -> tuple[list[Any], ProgressBar | None]:
    """Statistics and TensorBoard handlers (main process only) and the progress bar, if shown."""
    if not is_main_process:
        return [], None
    stats = StatsHandler(iteration_log=False, **({"tag_name": "train_loss",
                                                 "output_transform": from_engine(["loss"], first=True)} if loss else {}))
    reporting: list[Any] = [stats]
    if summary_writer is not None:
        reporting.append(TensorBoardStatsHandler(summary_writer=summary_writer, iteration_log=False,
                                                 global_epoch_transform=samples_seen))
    bar = ProgressBar(desc=desc, persist=False) if flag(progress_bars) else None
    return reporting, bar


def training_handlers(
    *,
    validator: Any,
    checkpoint_path: str | Path,
    state: Mapping[str, Any],
    lr_scheduler: Any = None,
    figures: Sequence[Any] = (),
    resume: Any = False,
    summary_writer: Any = None,
    is_main_process: bool = True,
    progress_bars: Any = True,
    validation: Sequence[Any] = (),
    val_interval: int = 1,
) -> list[Any]:
    """The trainer's handlers.

    ``state`` names everything the resumable checkpoint at ``checkpoint_path`` saves and restores
    (network, optimizer, schedule, counters), to which it adds the best-model score of the
    ``CheckpointSaver`` among ``validation`` (the evaluator's handlers, from
    :func:`validation_handlers`); ``state``'s handlers that are not torch objects (samples
    seen, unfreezing) are attached too, before validation. ``figures`` are the stage's own
    drawing handlers, run on the main process only. Validation runs every ``val_interval``
    epochs (the segmentation's scores every slice of every val series' lung box, minutes on a CPU).
    """
    stateful = [obj for obj in state.values()
                if hasattr(obj, "attach") and not isinstance(obj, (torch.nn.Module, torch.optim.Optimizer))]
    samples_seen = state.get("samples_seen")
    reporting, bar = _reporting(summary_writer, samples_seen, is_main_process, progress_bars, "train", loss=True)
    handlers: list[Any] = []
    if lr_scheduler is not None:
        handlers.append(LrScheduleHandler(lr_scheduler=lr_scheduler, epoch_level=False, print_lr=False))
    handlers += stateful
    handlers.append(ValidationHandler(validator=validator, epoch_level=True, interval=int(val_interval)))
    objects = dict(state)
    savers = [h for h in validation if isinstance(h, CheckpointSaver) and h._key_metric_checkpoint is not None]
    if savers:  # a resumed run keeps the better model.pt
        objects[BEST_MODEL] = BestModelScore(savers[0])
    handlers.append(ResumableCheckpoint(path=checkpoint_path, objects=objects, resume=flag(resume)))
    handlers += reporting
    if is_main_process:
        handlers += list(figures)
    return handlers + ([bar] if bar is not None else [])


def validation_handlers(
    *,
    ckpt_dir: str | Path | None,
    network: torch.nn.Module | None = None,
    load_path: str | Path | None = None,
    figures: Sequence[Any] = (),
    first: Sequence[Any] = (),
    summary_writer: Any = None,
    samples_seen: Any = None,
    is_main_process: bool = True,
    progress_bars: Any = True,
    desc: str = "val",
) -> list[Any]:
    """The evaluator's handlers: the weights at ``load_path`` loaded into ``network`` (a
    stand-alone evaluation), ``first`` (handlers that must see the raw epoch first, such as a
    baseline computed on the same series), statistics, the stage's ``figures``, and the best-model
    checkpoint ``ckpt_dir/model.pt`` when ``ckpt_dir`` is given (a stand-alone evaluation passes
    None and saves nothing)."""
    if (ckpt_dir is not None or load_path is not None) and network is None:
        raise ValueError("validation_handlers: loading or saving a checkpoint needs the network")
    reporting, bar = _reporting(summary_writer, samples_seen, is_main_process, progress_bars, desc, loss=False)
    handlers: list[Any] = []
    if load_path is not None:
        device = next(network.parameters()).device
        handlers.append(CheckpointLoader(load_path=str(load_path), load_dict={"model": network}, map_location=device))
    handlers += [*first, *reporting]
    if is_main_process:
        handlers += list(figures)
    if ckpt_dir is not None:
        handlers.append(CheckpointSaver(save_dir=str(ckpt_dir), save_dict={"model": network}, save_key_metric=True,
                                        key_metric_filename="model.pt", key_metric_greater_or_equal=True))
    return handlers + ([bar] if bar is not None else [])
