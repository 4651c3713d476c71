"""BufferedLinear (visiontasks/buffered_linear.py): nn.Linear's numbers, bit for bit, on kept buffers.

Each test runs the layer next to a plain ``nn.Linear`` with the same weights on the same inputs, in
float32 and under CPU bf16 autocast, and checks outputs and gradients with ``torch.equal``; the
buffer tests check which memory the gradient lands in, and that memory someone still refers to is
never written.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from visiontasks import buffered_linear
from visiontasks.buffered_linear import BufferedLinear, applies, select_linear_kernels
from visiontasks.engine.optim import build_optimizer

AMPS = [pytest.param(None, id="fp32"), pytest.param(torch.bfloat16, id="bf16")]


def _pair(in_features: int = 96, out_features: int = 40, bias: bool = True, seed: int = 0
          ) -> tuple[nn.Linear, BufferedLinear]:
    torch.manual_seed(seed)
    ref = nn.Linear(in_features, out_features, bias=bias)
    ours = copy.deepcopy(ref)
    assert select_linear_kernels(ours, min_weights=1) == 1
    return ref, ours


def _forward_backward(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, amp: torch.dtype | None
                      ) -> torch.Tensor:
    with torch.autocast("cpu", amp or torch.bfloat16, enabled=amp is not None):
        y = layer(x)
    (y.float() * g).sum().backward()
    return y


def _grads(layer: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in layer.parameters()]


def _buffer(layer: BufferedLinear, name: str) -> torch.Tensor:
    return layer.__dict__["_kept_buffers"].slots[name][0]


@pytest.mark.parametrize("amp", AMPS)
@pytest.mark.parametrize("bias", [True, False])
def test_training_steps_equal_nn_linear_bit_for_bit(amp: torch.dtype | None, bias: bool) -> None:
    ref, ours = _pair(bias=bias)
    opts = [build_optimizer(m, lr=0.1) for m in (ref, ours)]  # the Trainer's SGD: weights change every step
    for step in range(3):
        x = torch.randn(17, 96, generator=torch.Generator().manual_seed(step))
        g = torch.randn(17, 40, generator=torch.Generator().manual_seed(10 + step))
        xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
        ys = [_forward_backward(m, xi, g, amp) for m, xi in zip((ref, ours), xs)]
        assert ys[0].dtype == ys[1].dtype == (amp or torch.float32)
        assert torch.equal(ys[0], ys[1])
        assert torch.equal(xs[0].grad, xs[1].grad)
        for a, b in zip(_grads(ref), _grads(ours)):
            assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
        assert ours.weight.grad.data_ptr() == _buffer(ours, "grad32").data_ptr()  # kept as is, no copy
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("amp", AMPS)
def test_the_buffers_are_reused_from_step_to_step(amp: torch.dtype | None) -> None:
    _, ours = _pair()
    x, g = torch.randn(5, 96), torch.randn(5, 40)
    _forward_backward(ours, x, g, amp)
    names = {"grad32"} if amp is None else {"grad32", "grad_low", "weight"}
    assert set(ours.__dict__["_kept_buffers"].slots) == names
    first = {n: _buffer(ours, n).data_ptr() for n in names}
    ours.weight.grad = ours.bias.grad = None  # zero_grad(set_to_none=True)
    _forward_backward(ours, x + 1, g, amp)
    assert {n: _buffer(ours, n).data_ptr() for n in names} == first


@pytest.mark.parametrize("amp", AMPS)
def test_a_gradient_the_caller_kept_is_never_written(amp: torch.dtype | None) -> None:
    ref, ours = _pair()
    x, g = torch.randn(5, 96), torch.randn(5, 40)
    _forward_backward(ours, x, g, amp)
    kept = ours.weight.grad
    expected = kept.clone()
    ours.weight.grad = None
    _forward_backward(ours, 2 * x, g, amp)
    assert torch.equal(kept, expected)  # the first step's gradient is intact
    assert ours.weight.grad.data_ptr() != kept.data_ptr()
    _forward_backward(ref, 2 * x, g, amp)
    assert torch.equal(ours.weight.grad, ref.weight.grad)


@pytest.mark.parametrize("amp", AMPS)
def test_gradients_accumulate_over_backward_passes_as_nn_linear(amp: torch.dtype | None) -> None:
    ref, ours = _pair()
    for k in range(3):  # micro-batches: no zero_grad in between
        x, g = torch.randn(4, 96) * (k + 1), torch.randn(4, 40)
        for m in (ref, ours):
            _forward_backward(m, x, g, amp)
    for a, b in zip(_grads(ref), _grads(ours)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("amp", AMPS)
def test_two_graphs_alive_at_once_each_use_their_own_weights(amp: torch.dtype | None) -> None:
    """Two forwards before their backwards, the weight changed in between. In bf16 the inputs need
    gradients, so the first graph holds the bf16 weight buffer when the second forward runs: that one
    gets a new buffer (in fp32 the graphs would hold the weight itself, which PyTorch refuses to see
    changed, so there the inputs need none)."""
    ref, ours = _pair()
    grads = amp is not None
    xs = {name: (torch.randn(6, 96, generator=torch.Generator().manual_seed(1)).requires_grad_(grads),
                 torch.randn(6, 96, generator=torch.Generator().manual_seed(2)).requires_grad_(grads))
          for name in ("ref", "ours")}
    g = torch.randn(6, 40)
    outputs = {}
    for name, m in (("ref", ref), ("ours", ours)):
        x1, x2 = xs[name]
        with torch.autocast("cpu", amp or torch.bfloat16, enabled=amp is not None):
            y1 = m(x1)
        held = dict(m.__dict__["_kept_buffers"].slots) if name == "ours" else {}
        with torch.no_grad():
            m.weight.mul_(-0.5)
        with torch.autocast("cpu", amp or torch.bfloat16, enabled=amp is not None):
            y2 = m(x2)
        if grads and name == "ours":  # the second forward left the first graph's bf16 weight alone
            assert m.__dict__["_kept_buffers"].slots["weight"][0] is not held["weight"][0]
        ((y1.float() * g).sum() + (y2.float() * g).sum() * 3).backward()
        outputs[name] = (y1, y2, m.weight.grad.clone(), m.bias.grad.clone()) + ((x1.grad, x2.grad) if grads else ())
    for a, b in zip(outputs["ref"], outputs["ours"]):
        assert torch.equal(a, b)


def test_retained_graph_back_propagated_twice() -> None:
    ref, ours = _pair()
    x, g = torch.randn(3, 96), torch.randn(3, 40)
    for m in (ref, ours):
        with torch.autocast("cpu", torch.bfloat16):
            y = m(x)
        loss = (y.float() * g).sum()
        loss.backward(retain_graph=True)
        loss.backward()
    for a, b in zip(_grads(ref), _grads(ours)):
        assert torch.equal(a, b)


def test_without_reference_counts_every_call_allocates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PyTorch cannot count references the layer never reuses a buffer: same numbers, new memory."""
    monkeypatch.setattr(buffered_linear, "_refs", lambda t: None)
    ref, ours = _pair()
    x, g = torch.randn(5, 96), torch.randn(5, 40)
    for m in (ref, ours):
        _forward_backward(m, x, g, torch.bfloat16)
    held = ours.weight.grad
    ours.weight.grad = None
    _forward_backward(ours, x, g, torch.bfloat16)
    assert ours.weight.grad.data_ptr() != held.data_ptr()
    assert torch.equal(ours.weight.grad, ref.weight.grad) and torch.equal(held, ref.weight.grad)


def test_applies_only_where_a_training_step_records_a_gradient() -> None:
    _, ours = _pair()
    x = torch.randn(2, 96)
    assert applies(ours, x)
    with torch.autocast("cpu", torch.bfloat16):
        assert applies(ours, x) and applies(ours, x.bfloat16())
        assert not applies(ours, x.double())  # autocast leaves float64 alone: so does the layer
    with torch.autocast("cpu", torch.float16):
        assert not applies(ours, x)
    with torch.no_grad():
        assert not applies(ours, x)
    with torch.inference_mode():
        assert not applies(ours, x)
    assert not applies(ours, torch.randn(2, 3, 96))  # only 2-D inputs
    assert not applies(ours, x.bfloat16())  # fp32 mode wants fp32 inputs (nn.Linear raises on the mix)
    ours.eval()
    assert not applies(ours, x)
    ours.train()
    ours.weight.requires_grad_(False)
    assert not applies(ours, x)


def test_other_paths_are_nn_linear_and_eval_drops_the_buffers() -> None:
    ref, ours = _pair()
    x = torch.randn(4, 96)
    _forward_backward(ours, x, torch.randn(4, 40), torch.bfloat16)
    assert "_kept_buffers" in ours.__dict__
    ref.eval(), ours.eval()
    assert "_kept_buffers" not in ours.__dict__
    with torch.inference_mode():
        assert torch.equal(ours(x), ref(x))
        with torch.autocast("cpu", torch.bfloat16):
            assert torch.equal(ours(x), ref(x))
        assert torch.equal(ours(torch.randn(2, 3, 96, generator=torch.Generator().manual_seed(1))),
                           ref(torch.randn(2, 3, 96, generator=torch.Generator().manual_seed(1))))
    assert "_kept_buffers" not in ours.__dict__


def test_select_linear_kernels_takes_the_large_layers_and_keeps_the_state_dict() -> None:
    model = nn.Sequential(nn.Linear(4096, 2048), nn.ReLU(), nn.Linear(2048, 21))  # 8.4M and 43k weights
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert select_linear_kernels(model) == 1
    assert type(model[0]) is BufferedLinear and type(model[2]) is nn.Linear
    assert select_linear_kernels(model) == 0  # already re-classed
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    model(torch.randn(2, 4096)).sum().backward()
    copied = copy.deepcopy(model)
    assert model[0].__dict__["_kept_buffers"].slots  # the original holds its gradient buffer,
    assert type(copied[0]) is BufferedLinear and not copied[0].__dict__["_kept_buffers"].slots  # a copy none
    assert torch.equal(copied[0].weight, model[0].weight)


def test_vgg16_fast_rcnn_head_is_re_classed_by_the_trainer(tmp_path) -> None:
    """The Trainer on the CPU re-classes VGG16's fc6 and fc7 (and only them)."""
    from visiontasks import get_model
    from visiontasks.engine.trainer import Trainer

    model = get_model("faster_rcnn", backbone="vgg16", num_classes=3)
    trainer = Trainer(model, [], lambda b: b, str(tmp_path), max_iters=1, batch_size=1, amp="none", device="cpu")
    kinds = [(name, type(m).__name__) for name, m in trainer.model.named_modules() if isinstance(m, nn.Linear)]
    assert [name for name, kind in kinds if kind == "BufferedLinear"] == [
        name for name, m in trainer.model.named_modules()
        if isinstance(m, nn.Linear) and m.weight.numel() >= buffered_linear.MIN_WEIGHTS]
    assert sum(kind == "BufferedLinear" for _, kind in kinds) == 2
