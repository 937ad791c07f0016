"""Fine-tuning the nodule classifier into a malignancy model (the LUNA book, chapter 14.3).

Malignancy labels exist for a few hundred nodules only, far too few to train the 3D CNN from
scratch reliably, while the nodule classifier has already learnt from thousands of crops what a
nodule looks like. So the classifier's weights are loaded, its head (which answered "nodule?")
is re-initialised, and only the last ``depth`` parameterised blocks are trained: 1 = head only,
2 = head + block4 (the book's two settings), up to all of them.

Frozen parameters get ``requires_grad = False`` *and* stay out of the optimizer, so neither a
gradient nor weight decay nor momentum can move them. Two refinements beyond the book are
selectable: discriminative learning rates (block ``k`` steps from the head gets
``lr * decay**k``: early features are generic and should move least) and gradual unfreezing
(one more block joins every few epochs as a new parameter group, so a freshly initialised head
cannot wreck the pretrained features with its early large gradients).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

from lungmonai.handlers.checkpoint import unwrap
from lungmonai.optim import decay_param_groups, optimizer_from_groups, trainable
from lungmonai.weights import load_into

logger = logging.getLogger(__name__)

CLASSIFIER_HINT = (
    "train the nodule classifier first: `python -m monai.bundle run training "
    "--config_file bundles/nodule_cls/configs/train.json --dataset_dir DIR` (it writes "
    "bundles/nodule_cls/models/model.pt), point `classifier_ckpt` at another checkpoint, "
    "or pass `--from_scratch true`"
)


def block_names(network: nn.Module) -> list[str]:
    """Parameterised blocks from input to output (``LunaModel.parameter_blocks``)."""
    net = unwrap(network)
    if not hasattr(net, "parameter_blocks"):
        raise TypeError(f"{type(net).__name__} has no parameter_blocks(); fine-tuning needs named blocks")
    return list(net.parameter_blocks())


def last_blocks(network: nn.Module, depth: int) -> list[str]:
    """The last ``depth`` block names, head first (index = steps from the head)."""
    names = block_names(network)
    if not 1 <= int(depth) <= len(names):
        raise ValueError(f"finetune depth must be 1..{len(names)} ({', '.join(names)}), got {depth}")
    return names[::-1][: int(depth)]


def load_classifier_weights(network: nn.Module, ckpt_path: str | Path) -> nn.Module:
    """Load a nodule-classifier checkpoint (a plain state_dict, or ``{"model": state_dict}``)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nodule classifier checkpoint not found; {CLASSIFIER_HINT}")
    load_into(unwrap(network), path)
    return network


def reinit_head(network: nn.Module) -> nn.Module:
    """Fresh weights for ``head``: the classifier's answered another question.

    PyTorch's default Linear init (not the He init of the body) keeps the first logits small,
    so early losses are ~log 2 and the head's first gradients do not swamp the body.
    """
    head = unwrap(network).head
    head.reset_parameters()
    return network


_EVAL_HOOK = "_frozen_eval_hook"


def _hold_in_eval(module: nn.Module, *_: Any) -> None:
    module.train(False)


def _freeze_norm_statistics(block: nn.Module, frozen: bool) -> None:
    """Keep a frozen block's batch norms in eval mode, or release them.

    ``requires_grad = False`` stops gradients, but a batch norm in train mode still normalises
    with the batch's statistics and folds them into its running mean and variance, so a
    "frozen" body would drift towards the nodule-only data. The engines call ``train()`` on the
    whole network every iteration, so the eval mode is set again just before each forward.
    """
    for module in block.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        handle = getattr(module, _EVAL_HOOK, None)
        if frozen and handle is None:
            setattr(module, _EVAL_HOOK, module.register_forward_pre_hook(_hold_in_eval))
        elif not frozen and handle is not None:
            handle.remove()
            delattr(module, _EVAL_HOOK)


def set_trainable(network: nn.Module, blocks: Sequence[str]) -> nn.Module:
    """``requires_grad`` True for the parameters of ``blocks``, False for every other one; the
    other blocks' batch norms keep their running statistics (see ``_freeze_norm_statistics``)."""
    net = unwrap(network)
    wanted = set(blocks)
    unknown = wanted - set(block_names(net))
    if unknown:
        raise ValueError(f"unknown blocks {sorted(unknown)}; the network has {block_names(net)}")
    for param in net.parameters():
        param.requires_grad_(False)
    for name in block_names(net):
        block = getattr(net, name)
        for param in block.parameters():
            param.requires_grad_(name in wanted)
        _freeze_norm_statistics(block, frozen=name not in wanted)
    return network


def prepare_network(
    network: nn.Module,
    classifier_ckpt: str | Path,
    depth: int = 1,
    from_scratch: bool = False,
) -> nn.Module:
    """The network to train: pretrained body + new head with the last ``depth`` blocks trainable,
    or (``from_scratch``) the freshly initialised body + new head with everything trainable."""
    if from_scratch:
        # The same small-logit head as a fine-tuned run, so the two differ only in the body.
        return set_trainable(reinit_head(network), block_names(network))
    load_classifier_weights(network, classifier_ckpt)
    reinit_head(network)
    return set_trainable(network, last_blocks(network, depth))


def block_groups(
    network: nn.Module,
    blocks: Sequence[str],
    lr: float,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
    split_decay: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups for ``blocks``, each tagged ``"block": name``.

    Block ``k`` steps from the head gets ``lr * lr_decay**k``. With ``split_decay`` (AdamW),
    a block's biases and norm parameters form a second group without weight decay.
    """
    net = unwrap(network)
    order = block_names(net)[::-1]
    groups: list[dict[str, Any]] = []
    for name in blocks:
        block_lr = float(lr) * float(lr_decay) ** order.index(name)
        module = getattr(net, name)
        if split_decay:
            parts = [g for g in decay_param_groups(module, weight_decay) if g["params"]]
        else:
            parts = [{"params": trainable(module.parameters()), "weight_decay": weight_decay}]
        groups += [{**part, "lr": block_lr, "block": name} for part in parts if part["params"]]
    return groups


def trainable_blocks(network: nn.Module) -> list[str]:
    """Blocks with at least one trainable parameter, head first."""
    net = unwrap(network)
    return [n for n in block_names(net)[::-1] if any(p.requires_grad for p in getattr(net, n).parameters())]


def make_finetune_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
) -> torch.optim.Optimizer:
    """``sgd`` or ``adamw`` over the trainable blocks only, one group per block (see ``block_groups``)."""
    blocks = trainable_blocks(model)
    if not blocks:
        raise ValueError("no trainable parameters: finetune depth leaves every block frozen")
    return optimizer_from_groups(
        name, lambda split: block_groups(model, blocks, lr, lr_decay, weight_decay, split_decay=split), lr, momentum
    )


def add_block(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    block: str,
    lr: float,
    lr_decay: float = 1.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Unfreeze ``block`` and add its parameters to ``optimizer`` as new group(s).

    A ``LambdaLR``-family scheduler (constant, MONAI's warmup-cosine) is extended so the new
    group follows the same schedule from the current step; OneCycleLR keeps per-group state that
    cannot be extended, so it is refused.
    """
    net = unwrap(network)
    if block in trainable_blocks(net):
        return
    for param in getattr(net, block).parameters():
        param.requires_grad_(True)
    _freeze_norm_statistics(getattr(net, block), frozen=False)
    split = isinstance(optimizer, torch.optim.AdamW)
    # The configured decay, as the existing groups carry it (AdamW's own default is 0.01 and
    # the no-decay groups hold 0).
    weight_decay = max(group.get("weight_decay", 0.0) for group in optimizer.param_groups)
    groups = block_groups(net, [block], lr, lr_decay, weight_decay, split_decay=split)
    factor = 1.0
    if scheduler is not None:
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ValueError(
                f"gradual unfreezing needs a LambdaLR-based schedule ('constant' or 'warmup_cosine'), got {type(scheduler).__name__}"
            )
        factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in groups:
        group["initial_lr"] = group["lr"]
        base = group["lr"]
        group["lr"] = base * factor
        optimizer.add_param_group(group)
        if scheduler is not None:
            scheduler.base_lrs.append(base)
            scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
            if hasattr(scheduler, "_last_lr"):
                scheduler._last_lr.append(group["lr"])


class GradualUnfreezing:
    """Every ``every`` epochs one more block (towards the input) joins training.

    Depth at epoch ``e`` (1-based) is ``min(start_depth + (e - 1) // every, max_depth)``. The
    handler is checkpointable (``state_dict`` holds the depth reached): list it in the resumable
    checkpoint *before* the optimizer, so a resumed run re-adds the groups before the optimizer's
    saved state (which has them) is loaded. Not usable under DistributedDataParallel, which
    fixes the set of synchronised parameters when it is built.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        every: int,
        lr: float,
        lr_decay: float = 1.0,
        start_depth: int = 1,
        max_depth: int | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        if int(every) > 0 and isinstance(network, nn.parallel.DistributedDataParallel):
            raise ValueError("gradual unfreezing is not supported with DistributedDataParallel; set unfreeze_every 0")
        if int(every) > 0 and scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            # Refused now, not epochs into the run when the first block joins (see add_block).
            raise ValueError(f"gradual unfreezing needs a LambdaLR-based schedule ('constant' or 'warmup_cosine'), "
                             f"got {type(scheduler).__name__}; set unfreeze_every 0 or another schedule")
        self.network = network
        self.optimizer = optimizer
        self.every = int(every)
        self.lr = float(lr)
        self.lr_decay = float(lr_decay)
        self.start_depth = int(start_depth)
        self.max_depth = len(block_names(network)) if max_depth is None else int(max_depth)
        self.scheduler = scheduler
        self.depth = len(trainable_blocks(network))

    def attach(self, engine: Engine) -> None:
        if self.every > 0:
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def depth_at(self, epoch: int) -> int:
        """Blocks trained during ``epoch`` (1-based)."""
        return min(self.start_depth + (max(int(epoch), 1) - 1) // self.every, self.max_depth)

    def unfreeze_to(self, depth: int) -> list[str]:
        """Unfreeze blocks until ``depth`` are trainable; returns the blocks added."""
        added = []
        for block in last_blocks(self.network, depth):
            if block not in trainable_blocks(self.network):
                add_block(self.network, self.optimizer, block, self.lr, self.lr_decay, self.scheduler)
                added.append(block)
        self.depth = max(self.depth, depth)
        return added

    def __call__(self, engine: Engine) -> None:
        added = self.unfreeze_to(self.depth_at(engine.state.epoch))
        if added:
            logger.info("epoch %d: unfroze %s (%d parameter groups)", engine.state.epoch, added, len(self.optimizer.param_groups))

    def state_dict(self) -> dict[str, int]:
        return {"depth": self.depth}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.unfreeze_to(int(state["depth"]))
