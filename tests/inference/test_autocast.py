import pytest
import torch

from lungmonai.inference.autocast import AutocastInferer, autocast_dtype, cpu_has_fast_bf16


class _RecordsDtype(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.seen: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        self.seen = out.dtype
        return out


def test_bf16_runs_the_network_in_bfloat16_and_returns_float32_logits():
    net = _RecordsDtype()
    out = AutocastInferer("bf16")(torch.randn(3, 4), net)
    assert net.seen == torch.bfloat16
    assert out.dtype == torch.float32
    out.sum().backward()  # gradients flow through the autocast region
    assert net.linear.weight.grad is not None and net.linear.weight.grad.dtype == torch.float32


def test_fp32_is_a_plain_forward():
    net = _RecordsDtype()
    x = torch.randn(3, 4)
    out = AutocastInferer("fp32")(x, net)
    assert net.seen == torch.float32
    assert torch.equal(out, net.linear(x))


def test_auto_on_cpu_follows_the_hardware(monkeypatch):
    assert autocast_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_fast_bf16() else None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert autocast_dtype("auto", "cpu") is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert autocast_dtype("auto", "cpu") == torch.bfloat16


def test_auto_on_cuda_is_bf16_where_supported_and_left_to_the_engines_amp(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", "cuda:0") == torch.bfloat16  # the pipeline's own forward passes
    assert autocast_dtype("auto", "cuda:0", engine_amp=True) is None  # MONAI's amp switch covers it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("auto", "cuda:0") is None  # pre-Ampere: float32 rather than slow emulation


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        AutocastInferer("fp8")
