"""Optimizers and per-iteration learning-rate schedules selectable from bundle configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungmonai.classification import LunaModel
from lungmonai.optim import decay_param_groups, make_optimizer, make_scheduler


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3)
        self.bn = nn.BatchNorm3d(2)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(1, 2)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.nobias = nn.Linear(4, 4, bias=False)


def _ids(params):
    return {id(p) for p in params}


def test_adamw_keeps_biases_and_norms_out_of_decay():
    model = _Small()
    opt = make_optimizer("AdamW", model, lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.05)
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.0)
    assert _ids(decay["params"]) == _ids([model.conv.weight, model.fc.weight, model.nobias.weight])
    assert _ids(no_decay["params"]) == _ids([
        model.conv.bias, model.fc.bias, model.bn.weight, model.bn.bias,
        model.ln.weight, model.ln.bias, model.gn.weight, model.gn.bias,
    ])
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_frozen_parameters_never_enter_an_optimizer():
    model = _Small()
    frozen = _ids(model.frozen.parameters())
    for name in ("sgd", "adamw"):
        opt = make_optimizer(name, model, lr=0.1, weight_decay=0.01)
        params = [p for g in opt.param_groups for p in g["params"]]
        assert not (_ids(params) & frozen), name
        assert len(params) == sum(1 for p in model.parameters() if p.requires_grad)


def test_sgd_is_the_books():
    model = LunaModel()
    opt = make_optimizer("sgd", model, lr=1e-3)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.99 and opt.param_groups[0]["lr"] == 1e-3
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_groups_of_luna_model_cover_every_parameter_once():
    model = LunaModel()
    groups = decay_param_groups(model, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert _ids(groups[1]["params"]) >= _ids(model.tail_batchnorm.parameters())


def _lrs(name, steps, lr=0.1, warmup=0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(name, opt, total_steps=steps, warmup_steps=warmup)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_stays():
    assert _lrs("constant", 20) == [0.1] * 20


def test_warmup_cosine_rises_then_decays():
    lrs = _lrs("warmup_cosine", 40, warmup=10)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] < 0.02 and peak == 10 and lrs[peak] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.01


def test_warmup_longer_than_the_run_is_capped():
    lrs = _lrs("warmup_cosine", 5, warmup=100)
    assert max(lrs) <= 0.1 + 1e-12 and lrs[0] == 0.0


def test_onecycle_peaks_at_the_given_lr():
    lrs = _lrs("onecycle", 50, lr=0.2)
    assert max(lrs) == pytest.approx(0.2)
    peak = lrs.index(max(lrs))
    assert 0 < peak < 49
    assert lrs[0] < 0.2 / 10 and lrs[-1] < lrs[0]
    assert all(a <= b for a, b in zip(lrs[: peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


@pytest.mark.parametrize("name, momentum", [("sgd", 0.99), ("adamw", 0.9)])
def test_onecycle_keeps_the_configured_momentum_at_both_ends(name, momentum):
    optimizer = make_optimizer(name, nn.Linear(2, 2), lr=0.1, momentum=momentum)
    scheduler = make_scheduler("onecycle", optimizer, total_steps=40)
    key = "momentum" if name == "sgd" else "betas"
    seen = []
    for _ in range(40):
        value = optimizer.param_groups[0][key]
        seen.append(value if name == "sgd" else value[0])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(momentum) and seen[-1] == pytest.approx(momentum, abs=1e-3)
    assert min(seen) == pytest.approx(momentum - 0.1, abs=1e-3) and max(seen) <= momentum + 1e-12


def test_onecycle_with_plain_sgd_leaves_momentum_off():
    optimizer = make_optimizer("sgd", nn.Linear(2, 2), lr=0.1, momentum=0.0)
    scheduler = make_scheduler("onecycle", optimizer, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["momentum"] == 0.0


def test_unknown_names_raise():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adam9", model, lr=0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_scheduler("cosine_restarts", torch.optim.SGD(model.parameters(), lr=0.1), total_steps=10)
