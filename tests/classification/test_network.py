"""LunaModel: the book's 3D candidate classifier."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lungmonai.classification import LunaModel


def _conv3(cin: int, cout: int) -> int:
    return cout * cin * 27 + cout  # 3x3x3 kernel + bias


def _expected_parameters(in_ch: int = 1, conv: int = 8, out: int = 2, size=(32, 48, 48)) -> int:
    chans = [in_ch, conv, conv * 2, conv * 4, conv * 8]
    blocks = sum(_conv3(a, b) + _conv3(b, b) for a, b in zip(chans[:-1], chans[1:]))
    flat = chans[-1] * math.prod(s // 16 for s in size)
    return 2 * in_ch + blocks + flat * out + out  # input BatchNorm (weight, bias) + convs + linear head


def test_output_shape_and_dtype():
    model = LunaModel().eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 1, 32, 48, 48))
    assert logits.shape == (3, 2)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_parameter_count_of_the_book_model():
    model = LunaModel()
    count = sum(p.numel() for p in model.parameters())
    assert count == _expected_parameters() == 222_220
    assert isinstance(model.tail_batchnorm, nn.BatchNorm3d)
    assert [model.block1.conv1.out_channels, model.block2.conv1.out_channels,
            model.block3.conv1.out_channels, model.block4.conv1.out_channels] == [8, 16, 32, 64]
    assert model.head.out_features == 2


def test_other_sizes_and_channels():
    model = LunaModel(in_channels=2, out_channels=3, conv_channels=4, spatial_size=(16, 32, 16)).eval()
    assert sum(p.numel() for p in model.parameters()) == _expected_parameters(2, 4, 3, (16, 32, 16))
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 16, 32, 16)).shape == (1, 3)


@pytest.mark.parametrize("size", [(32, 48, 40), (30, 48, 48), (8, 16, 16)])
def test_rejects_sizes_not_divisible_by_16(size):
    with pytest.raises(ValueError, match="divisible by 16"):
        LunaModel(spatial_size=size)


def test_parameter_blocks_are_attributes_in_forward_order():
    model = LunaModel()
    names = LunaModel.parameter_blocks()
    assert names == ["tail_batchnorm", "block1", "block2", "block3", "block4", "head"]
    modules = [getattr(model, name) for name in names]
    assert all(isinstance(m, nn.Module) and any(True for _ in m.parameters()) for m in modules)
    # together they hold every parameter exactly once
    ids = [id(p) for m in modules for p in m.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    # order = the order of the top-level children (input to output)
    assert [n for n, _ in model.named_children() if n in names] == names


def test_he_initialisation():
    torch.manual_seed(0)
    model = LunaModel()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert len(convs) == 8
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0
        if conv.weight.numel() < 10_000:
            continue  # too few samples for a tight std estimate
        fan_out = conv.out_channels * 27
        expected = math.sqrt(2.0 / fan_out)
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.05 * expected
    # PyTorch's default (kaiming_uniform, a=sqrt(5), fan_in) would give a much smaller std
    big = model.block4.conv2
    default_std = math.sqrt(1.0 / (3 * big.in_channels * 27))
    assert big.weight.std().item() > 2 * default_std  # sqrt(6) times larger


def test_trains_one_step():
    torch.manual_seed(0)
    model = LunaModel(spatial_size=(16, 16, 16))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 1, 16, 16, 16), torch.tensor([0, 1, 0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_inference_pool_gives_the_max_pools_values(channels_last):
    from lungmonai.classification.network import max_pool_2x

    x = torch.randn(2, 8, 8, 12, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(max_pool_2x(x), nn.functional.max_pool3d(x, 2, 2))
    bf16 = x.to(torch.bfloat16)  # ties, which bfloat16 makes common, keep the same value
    assert torch.equal(max_pool_2x(bf16), nn.functional.max_pool3d(bf16, 2, 2))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_block_gives_the_books_conv_relu_conv_relu_pool_values(precision):
    from lungmonai.inference.autocast import autocast_context

    torch.manual_seed(0)
    model = LunaModel().eval()
    x = torch.randn(3, 1, 32, 48, 48)

    def book(block, v):  # the book's order: ReLU before the pool
        return nn.functional.max_pool3d(torch.relu(block.conv2(torch.relu(block.conv1(v)))), 2, 2)

    with autocast_context(precision, "cpu"):
        with torch.no_grad():
            v = model.tail_batchnorm(x.contiguous(memory_format=torch.channels_last_3d))
            for block in (model.block1, model.block2, model.block3, model.block4):
                expected = book(block, v)
                assert torch.equal(block(v), expected)
                v = expected
            inference = model(x)
        training = model(x)  # with gradients: MaxPool3d, the same values
    assert torch.equal(inference, training)
    training.sum().backward()
    assert model.block1.conv1.weight.grad is not None and torch.isfinite(model.block1.conv1.weight.grad).all()


def test_inference_on_the_cpu_skips_the_max_pool_module_and_training_uses_it():
    # The inference pool is the measured speed-up (analysis 7.0 -> 5.3 s per CT); training keeps
    # MaxPool3d, whose gradient picks one of tied maxima.
    model = LunaModel()
    calls = []
    for name in ("block1", "block2", "block3", "block4"):
        getattr(model, name).pool.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model.eval()(torch.randn(2, 1, 32, 48, 48))
    assert calls == []
    model.train()(torch.randn(2, 1, 32, 48, 48)).sum().backward()
    assert len(calls) == 4
