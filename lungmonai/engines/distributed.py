"""Multi-process training (``torchrun``) for every trained bundle's ``multi_gpu_train.json``.

The same calls whatever the stage: a NCCL process group on GPUs and gloo on CPUs (so the
multi-process path also runs, and is tested, on a machine without a GPU), one device per local
rank, the network wrapped in DistributedDataParallel, and a clean teardown.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any

import ignite.distributed as idist
import torch
import torch.distributed as dist
from monai.data import DistributedSampler
from torch import nn


def local_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK``), or the CPU."""
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")


def setup(device: torch.device) -> None:
    """Join the process group torchrun set up the environment for, and select ``device``."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    idist.sync()
    if device.type == "cuda":
        torch.cuda.set_device(device)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 writes logs, figures and checkpoints. Resolved after :func:`setup` has run."""
    return rank() == 0


def wrap(network: nn.Module, device: torch.device) -> nn.Module:
    """``network`` on ``device`` in DistributedDataParallel (checkpoints save the inner module)."""
    return nn.parallel.DistributedDataParallel(network.to(device), device_ids=[device] if device.type == "cuda" else None)


def evaluation_sampler(items: Sized) -> DistributedSampler:
    """Each rank validates its share of ``items`` once, in order, without padding (MONAI's
    sampler, ``even_divisible=False``: a padded share would count some series twice)."""
    return DistributedSampler(items, even_divisible=False, shuffle=False)


def teardown(summary_writer: Any = None) -> None:
    """Close ``summary_writer`` (rank 0's, None elsewhere), wait for every rank, then leave the
    process group."""
    if summary_writer is not None:
        summary_writer.close()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
