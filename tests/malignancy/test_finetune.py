"""Fine-tuning: which parameters train, which are in the optimizer, at which learning rate, when."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from lungmonai.classification import LunaModel
from lungmonai.malignancy.finetune import (
    GradualUnfreezing,
    last_blocks,
    make_finetune_optimizer,
    prepare_network,
)
from lungmonai.optim import make_scheduler

BLOCKS = LunaModel.parameter_blocks()


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    net = LunaModel()
    with torch.no_grad():
        net.tail_batchnorm.weight.fill_(1.5)  # not the default, so loading is visible
    path = tmp_path_factory.mktemp("cls") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def _block_of(param_name: str) -> str:
    return param_name.split(".")[0]


def _optimizer_params(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_depth_trains_exactly_the_last_blocks_and_only_they_enter_the_optimizer(classifier_ckpt: Path, depth: int) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=depth)
    expected = set(BLOCKS[-depth:])
    trained = {_block_of(n) for n, p in net.named_parameters() if p.requires_grad}
    assert trained == expected
    optimizer = make_finetune_optimizer("sgd", net, lr=1e-3)
    in_optimizer = _optimizer_params(optimizer)
    for name, param in net.named_parameters():
        assert (id(param) in in_optimizer) == (_block_of(name) in expected), name
    assert [g["block"] for g in optimizer.param_groups] == last_blocks(net, depth)


def test_depth_one_is_head_only_and_two_adds_block4(classifier_ckpt: Path) -> None:
    assert last_blocks(LunaModel(), 1) == ["head"]
    assert last_blocks(LunaModel(), 2) == ["head", "block4"]
    with pytest.raises(ValueError, match="1..6"):
        prepare_network(LunaModel(), classifier_ckpt, depth=0)


def test_body_is_loaded_and_head_reinitialised(classifier_ckpt: Path) -> None:
    saved = torch.load(classifier_ckpt, weights_only=True)
    torch.manual_seed(123)
    net = prepare_network(LunaModel(), classifier_ckpt, depth=2)
    state = net.state_dict()
    for key in ("block1.conv1.weight", "block4.conv2.bias", "tail_batchnorm.weight"):
        assert torch.equal(state[key], saved[key]), key
    assert not torch.equal(state["head.weight"], saved["head.weight"])
    # PyTorch's default Linear init: |w| <= 1/sqrt(fan_in)
    assert state["head.weight"].abs().max() <= 1 / state["head.weight"].shape[1] ** 0.5


def test_frozen_parameters_do_not_move_in_a_training_step(classifier_ckpt: Path) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=2)
    optimizer = make_finetune_optimizer("adamw", net, lr=1e-2, weight_decay=0.1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss = net(torch.randn(4, 1, 32, 48, 48)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    after = net.state_dict()
    for key in before:  # the frozen tail batch norm's running statistics included
        moved = not torch.equal(before[key], after[key])
        assert moved == (key.split(".")[0] in {"head", "block4"}), key


def test_unfreezing_releases_the_batch_norm_and_keeps_the_configured_weight_decay(classifier_ckpt: Path) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=4)  # head and block4..block2
    optimizer = make_finetune_optimizer("adamw", net, lr=1e-2, weight_decay=0.05)
    unfreezing = GradualUnfreezing(net, optimizer, every=1, lr=1e-2, start_depth=4, max_depth=6)
    unfreezing.unfreeze_to(6)  # adds block1 (conv weights and biases), then tail_batchnorm
    block1 = {g["weight_decay"] for g in optimizer.param_groups if g["block"] == "block1"}
    assert block1 == {0.0, 0.05}  # added by unfreezing: weights decayed as configured, biases not
    decays = {(g["block"], g["weight_decay"]) for g in optimizer.param_groups if g["block"] == "tail_batchnorm"}
    assert decays == {("tail_batchnorm", 0.0)}  # norm parameters: never decayed
    block4 = {g["weight_decay"] for g in optimizer.param_groups if g["block"] == "block4"}
    assert block4 == {0.0, 0.05}
    running = net.tail_batchnorm.running_mean.clone()
    net.train()
    net(torch.randn(4, 1, 32, 48, 48))
    assert not torch.equal(running, net.tail_batchnorm.running_mean)  # trainable again: its statistics move


def test_unfrozen_block_gets_the_configured_decay_not_adamws_default(classifier_ckpt: Path) -> None:
    for configured in (0.0, 0.05):
        net = prepare_network(LunaModel(), classifier_ckpt, depth=1)
        optimizer = make_finetune_optimizer("adamw", net, lr=1e-2, weight_decay=configured)
        GradualUnfreezing(net, optimizer, every=1, lr=1e-2, start_depth=1, max_depth=2).unfreeze_to(2)
        weights = [g["weight_decay"] for g in optimizer.param_groups if g["block"] == "block4"]
        assert max(weights) == configured, weights


def test_from_scratch_trains_everything_without_a_checkpoint(tmp_path: Path) -> None:
    net = prepare_network(LunaModel(), tmp_path / "absent.pt", depth=1, from_scratch=True)
    assert all(p.requires_grad for p in net.parameters())


def test_missing_checkpoint_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bundles/nodule_cls/configs/train.json"):
        prepare_network(LunaModel(), tmp_path / "absent.pt", depth=2)


def test_discriminative_learning_rates_shrink_towards_the_input(classifier_ckpt: Path) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=3)
    optimizer = make_finetune_optimizer("sgd", net, lr=1e-2, lr_decay=0.5)
    lrs = {g["block"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"head": 1e-2, "block4": 5e-3, "block3": 2.5e-3})


def test_gradual_unfreezing_adds_one_group_every_e_epochs(classifier_ckpt: Path) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=1)
    optimizer = make_finetune_optimizer("sgd", net, lr=1e-2, lr_decay=0.5)
    scheduler = make_scheduler("constant", optimizer, total_steps=10)
    unfreezing = GradualUnfreezing(net, optimizer, every=2, lr=1e-2, lr_decay=0.5, start_depth=1, max_depth=3,
                                   scheduler=scheduler)
    seen: dict[int, list[str]] = {}
    engine = Engine(lambda e, b: None)
    unfreezing.attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def record(e: Engine) -> None:  # registered after the unfreezing handler, so it sees its result
        seen[e.state.epoch] = [g["block"] for g in optimizer.param_groups]

    engine.run([0], max_epochs=7)
    assert seen[1] == seen[2] == ["head"]
    assert seen[3] == seen[4] == ["head", "block4"]
    assert seen[5] == seen[6] == seen[7] == ["head", "block4", "block3"]  # max_depth reached
    assert {_block_of(n) for n, p in net.named_parameters() if p.requires_grad} == {"head", "block4", "block3"}
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    scheduler.step()  # the schedule drives the added groups too
    assert len(scheduler.get_last_lr()) == 3


def test_unfreezing_state_restores_groups_before_the_optimizer_loads(classifier_ckpt: Path) -> None:
    def setup() -> tuple[torch.nn.Module, torch.optim.Optimizer, GradualUnfreezing]:
        net = prepare_network(LunaModel(), classifier_ckpt, depth=1)
        opt = make_finetune_optimizer("sgd", net, lr=1e-2)
        return net, opt, GradualUnfreezing(net, opt, every=1, lr=1e-2)

    _, opt, unfreezing = setup()
    unfreezing.unfreeze_to(3)
    state = {"unfreezing": unfreezing.state_dict(), "optimizer": opt.state_dict()}
    net2, opt2, unfreezing2 = setup()
    unfreezing2.load_state_dict(state["unfreezing"])
    opt2.load_state_dict(state["optimizer"])  # would raise on a group-count mismatch
    assert [g["block"] for g in opt2.param_groups] == ["head", "block4", "block3"]


def test_unfreezing_with_one_cycle_is_refused_when_built(classifier_ckpt: Path) -> None:
    net = prepare_network(LunaModel(), classifier_ckpt, depth=1)
    optimizer = make_finetune_optimizer("sgd", net, lr=1e-2)
    scheduler = make_scheduler("onecycle", optimizer, total_steps=10)
    with pytest.raises(ValueError, match="needs a LambdaLR-based schedule.*OneCycleLR"):
        GradualUnfreezing(net, optimizer, every=2, lr=1e-2, scheduler=scheduler)
    GradualUnfreezing(net, optimizer, every=0, lr=1e-2, scheduler=scheduler)  # off: any schedule
