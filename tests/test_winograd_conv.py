"""NNPACK's Winograd 3×3 convolution (visiontasks/winograd_conv.py): values and gradients against a
float64 direct convolution, the rule that decides which layers take it, and its fallbacks."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks import winograd_conv
from visiontasks.conv_select import SelectedConv2d, inference_layout, select_conv_kernels

pytestmark = pytest.mark.skipif(not torch.backends.nnpack.is_available(),
                                reason="NNPACK is not available on this CPU / PyTorch build")


@pytest.fixture(autouse=True)
def _pool_at_this_thread_count():
    """The guard compares the thread count with the one NNPACK's pool was made with; a test elsewhere
    may have made the pool at another count, which would send these tests down the direct path."""
    saved = winograd_conv._state["pool"]
    if saved is not None:
        winograd_conv._state["pool"] = (os.getpid(), torch.get_num_threads())
    yield
    winograd_conv._state["pool"] = saved


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).norm() / ref.norm()).item()


@pytest.fixture
def count_nnpack(monkeypatch):
    """Counts calls of torch._nnpack_spatial_convolution (still computing them)."""
    calls = []
    real = torch._nnpack_spatial_convolution

    def spy(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", spy)
    return calls


@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_match_float64_direct_convolution(pad: int, batch: int, bias: bool) -> None:
    g = torch.Generator().manual_seed(pad * 4 + batch * 2 + bias)
    x = torch.randn(batch, 64, 23, 31, generator=g).requires_grad_()
    w = (torch.randn(80, 64, 3, 3, generator=g) * 0.05).requires_grad_()
    b = torch.randn(80, generator=g).requires_grad_() if bias else None
    y = winograd_conv.winograd_conv2d(x, w, b, pad)
    grad = torch.randn(y.shape, generator=g)
    y.backward(grad)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b64 = b.detach().double().requires_grad_() if bias else None
    ref = F.conv2d(x64, w64, b64, padding=pad)
    ref.backward(grad.double())
    assert y.shape == ref.shape == (batch, 80, 23 + 2 * pad - 2, 31 + 2 * pad - 2)
    # float32 rounding (oneDNN's own direct fp32 convolution is ~1e-6 from float64 on these inputs)
    assert _rel(y, ref) < 2e-5 and _rel(x.grad, x64.grad) < 2e-5 and _rel(w.grad, w64.grad) < 2e-5
    if bias:
        assert _rel(b.grad, b64.grad) < 2e-5


def test_frozen_input_gets_no_input_gradient(count_nnpack) -> None:
    x = torch.randn(1, 64, 20, 20)  # no grad: only the weight gradient (oneDNN), no NNPACK backward
    w = torch.randn(64, 64, 3, 3, requires_grad=True)
    winograd_conv.winograd_conv2d(x, w, None, 1).sum().backward()
    assert count_nnpack == [(1, 64, 20, 20)] and w.grad is not None


def _conv(cin: int = 64, cout: int = 64, marked: bool = True, **kwargs) -> SelectedConv2d:
    conv = nn.Conv2d(cin, cout, kwargs.pop("kernel_size", 3), padding=kwargs.pop("padding", 1), **kwargs)
    conv.vt_winograd = marked  # what winograd_conv.mark sets on the layers it accepts
    select_conv_kernels(conv)
    return conv


@pytest.mark.parametrize("conv, size, takes", [
    (lambda: _conv(), 50, True),  # 64→64, 50×50 = MIN_POSITIONS
    (lambda: _conv(), 49, False),  # 49×49 < 2,500 positions
    (lambda: _conv(marked=False), 80, False),  # an architecture not opted in
    (lambda: _conv(3, 64), 80, True),  # VGG16's conv1_1: few channels in is fine
    (lambda: _conv(64, 32), 80, False),  # < MIN_CHANNELS out
    (lambda: _conv(stride=2), 120, False),
    (lambda: _conv(dilation=2, padding=2), 80, False),
    (lambda: _conv(groups=2), 80, False),
    (lambda: _conv(kernel_size=1, padding=0), 80, False),
    (lambda: _conv(padding=0), 52, True),  # 50×50 out
    (lambda: _conv(padding=2), 80, False),
    (lambda: _conv(padding_mode="reflect"), 80, False),
])
def test_which_layers_take_it(count_nnpack, conv, size: int, takes: bool) -> None:
    layer = conv().eval()
    x = torch.randn(1, layer.in_channels, size, size)
    with torch.no_grad():
        got = layer(x)
        ref = nn.Conv2d._conv_forward(layer, x, layer.weight, layer.bias)  # PyTorch's own
    assert bool(count_nnpack) == takes
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_mark_takes_only_layers_the_rule_can_take() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1),
                          nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.Conv2d(64, 128, 1), nn.Conv2d(64, 32, 3))
    assert winograd_conv.mark(model) == 2
    assert [getattr(m, "vt_winograd", False) for m in model] == [True, True, False, False, False]
    assert "vt_winograd" not in str(model.state_dict().keys())


def test_not_under_autocast_tracing_channels_last_or_in_low_precision(count_nnpack) -> None:
    layer = _conv().eval()
    x = torch.randn(1, 64, 60, 60)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    with torch.no_grad():
        layer(x.contiguous(memory_format=torch.channels_last))
    torch.jit.trace(layer, x, check_trace=False)  # (the check would rerun it untraced)
    layer.to(torch.bfloat16)(x.bfloat16())
    assert count_nnpack == []


def test_switch_and_thread_count_change_fall_back(count_nnpack) -> None:
    layer = _conv().eval()
    x = torch.randn(1, 64, 60, 60)
    with torch.no_grad():
        ref = layer(x)
        assert len(count_nnpack) == 1
        winograd_conv.set_enabled(False)
        try:
            layer(x)
        finally:
            winograd_conv.set_enabled(True)
        assert len(count_nnpack) == 1
        threads = torch.get_num_threads()
        torch.set_num_threads(threads + 1)  # NNPACK's pool keeps the first call's count: direct path
        try:
            assert not winograd_conv.available()
            got = layer(x)
        finally:
            torch.set_num_threads(threads)
        assert len(count_nnpack) == 1 and torch.allclose(got, ref, rtol=1e-4, atol=1e-4)
        layer(x)
        assert len(count_nnpack) == 2


def test_a_forked_child_takes_the_direct_path(count_nnpack, monkeypatch) -> None:
    """NNPACK's pool threads do not survive fork(): a child (another pid) must not call into it."""
    layer = _conv().eval()
    x = torch.randn(1, 64, 60, 60)
    with torch.no_grad():
        layer(x)  # the pool now belongs to this process
        assert winograd_conv._state["pool"][0] == os.getpid() and len(count_nnpack) == 1
        monkeypatch.setattr(winograd_conv.os, "getpid", lambda: -1)  # as seen from a forked child
        assert not winograd_conv.available()
        layer(x)
    assert len(count_nnpack) == 1


def _two_convs(marked: bool = True) -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1)).eval()
    if marked:
        winograd_conv.mark(model)
    return model


def test_marked_fp32_models_stay_nchw_others_go_channels_last() -> None:
    model = inference_layout(_two_convs(), "cpu")
    assert model[2].weight.is_contiguous() and type(model[2]) is SelectedConv2d
    low = inference_layout(_two_convs().to(torch.bfloat16), "cpu")  # bf16: oneDNN's channels-last kernels
    assert low[2].weight.is_contiguous(memory_format=torch.channels_last)
    unmarked = inference_layout(_two_convs(marked=False), "cpu")
    assert unmarked[2].weight.is_contiguous(memory_format=torch.channels_last)
    winograd_conv.set_enabled(False)
    try:
        off = inference_layout(_two_convs(), "cpu")
    finally:
        winograd_conv.set_enabled(True)
    assert off[2].weight.is_contiguous(memory_format=torch.channels_last)


def test_vgg16_body_at_faster_rcnn_scale_matches_the_direct_path(count_nnpack) -> None:
    from visiontasks import get_model

    body = get_model("vgg16").body.eval()
    x = torch.randn(1, 3, 112, 160)
    with torch.no_grad():
        ref = body(x)
        select_conv_kernels(body)
        got = body(x)
    # conv1_x (112×160), conv2_x (56×80), not conv3_x (28×40 < 2,500 positions) at this size
    assert count_nnpack == [(1, 3, 112, 160), (1, 64, 112, 160), (1, 64, 56, 80), (1, 128, 56, 80)]
    assert _rel(got, ref.double()) < 1e-4


class _Maps(torch.utils.data.Dataset):
    """64×64 three-channel images whose target is their mean (large enough maps for the rule)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))
        return x, {"y": x.mean().reshape(1)}


class _MarkedRegressor(nn.Module):
    def __init__(self, marked: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, 1)
        if marked:
            winograd_conv.mark(self.body)

    def forward(self, images, targets=None):
        pred = self.head(self.body(torch.stack(images)))
        return {"loss_mse": F.mse_loss(pred, torch.stack([t["y"] for t in targets]))}


def _trainer(tmp_path, model: nn.Module, amp: str):
    from visiontasks.engine.trainer import Trainer

    return Trainer(model, _Maps(), lambda b: ([x for x, _ in b], [t for _, t in b]), tmp_path / amp, max_iters=1,
                   batch_size=2, lr=0.01, log_every=1, num_workers=0, device="cpu", amp=amp)


def test_fp32_training_of_a_marked_model_takes_it(tmp_path, count_nnpack) -> None:
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, _MarkedRegressor(), "none")
    assert [type(m) for m in trainer.model.body[::2][:2]] == [SelectedConv2d, SelectedConv2d]
    before = trainer.model.body[2].weight.detach().clone()
    trainer.train()
    # forward: both layers, one image per call (2 + 2); backward: layer 2's input gradient (2), not
    # layer 1's (its input is the data, no gradient needed)
    assert sorted(count_nnpack) == sorted([(1, 3, 64, 64)] * 2 + [(1, 64, 64, 64)] * 4)
    assert not torch.equal(before, trainer.model.body[2].weight)


def test_unmarked_or_low_precision_training_keeps_pytorchs_convolutions(tmp_path, count_nnpack) -> None:
    assert type(_trainer(tmp_path, _MarkedRegressor(marked=False), "none").model.body[0]) is nn.Conv2d
    from visiontasks.precision import cpu_bf16_supported

    if cpu_bf16_supported():  # elsewhere amp=bf16 falls back to fp32, where the rule would apply
        trainer = _trainer(tmp_path, _MarkedRegressor(), "bf16")
        assert type(trainer.model.body[0]) is nn.Conv2d
        trainer.train()
    assert count_nnpack == []


def test_calls_from_several_threads_equal_sequential_ones(count_nnpack) -> None:
    """PyTorch keeps NNPACK's workspace per thread; its pool serialises concurrent calls."""
    from concurrent.futures import ThreadPoolExecutor

    layer = _conv().eval()
    inputs = [torch.randn(1, 64, 60 + 4 * i, 60, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    with torch.no_grad():
        sequential = [layer(x) for x in inputs]

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return layer(x)
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(run, inputs * 3))
    assert len(count_nnpack) == 24
    assert all(torch.equal(got, sequential[i % 6]) for i, got in enumerate(threaded))


def test_a_failing_nnpack_call_falls_back_once_with_a_warning(monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", broken)
    monkeypatch.setitem(winograd_conv._state, "enabled", True)  # restored after the test
    layer = _conv().eval()
    x = torch.randn(2, 64, 60, 60, requires_grad=True)
    with caplog.at_level("WARNING", logger="visiontasks"):
        y = layer(x)
        y.sum().backward()  # the input gradient falls back too
        layer(x)
    ref = nn.Conv2d._conv_forward(layer, x, layer.weight, layer.bias)
    torch.testing.assert_close(y, ref)
    assert x.grad is not None and not winograd_conv.available()
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "visiontasks: NNPACK's convolution failed (NNPACK SpatialConvolution_updateOutput failed)"]
