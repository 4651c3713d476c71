"""Large fully connected layers in CPU training, with their casts and gradients in kept buffers.

In a training step an ``nn.Linear`` allocates its weight's gradient anew (the ``mm`` of backward, and
under ``torch.autocast("cpu", torch.bfloat16)`` first a new bf16 copy of the weight on every forward,
a bf16 gradient and then its float32 cast), and the next ``zero_grad(set_to_none=True)`` frees it.
VGG16's fc6 (25,088 → 4,096: 102.8M weights) thus allocates and frees 205 + 205 + 411 MB per bf16
step. glibc serves blocks over 32 MB with ``mmap`` and returns them with ``munmap``, so each step
faults every page of them in again (4 KiB at a time, zeroed by the kernel). Measured on this machine
for fc6 (2 threads, minimum of 5, ms): the weight cast 75 into a new tensor against 19 into an
existing one, the gradient cast 121 against 19, the bf16 weight-gradient product at 2 × 128 RoIs
185 against 134 (``torch.mm(..., out=)``), a float32 clone 116 against a copy 24.

:class:`BufferedLinear` runs the same products on buffers it keeps between steps: the bf16 weight
(cast again in place on every forward, so never stale: the optimizer changes the weight every
step), the bf16 weight gradient and the float32 gradient the parameter receives. The last is handed
to autograd as a new tensor object viewing the buffer: ``AccumulateGrad`` keeps a gradient without
copying it when no other tensor object refers to it (``torch/csrc/autograd/functions/
accumulate_grad.h``, "Case 1.1: Stealable dense new_grad"), so ``weight.grad`` is that view, and
after ``zero_grad(set_to_none=True)`` the buffer is free again. A buffer still referred to
elsewhere — a gradient the caller kept, one accumulated over micro-batches, a graph not yet
back-propagated — is never written: that call allocates a new one (references counted with
``Tensor._use_count`` and ``torch._C._storage_Use_Count``; where PyTorch lacks them, always new).

The numbers are PyTorch's, bit for bit (tested with ``torch.equal``), by construction: the same
calls on the same operands. The forward is ``addmm(bias, x, weight.t())`` on the operands autocast
would pass (bf16 under bf16 autocast, else float32); backward makes the calls autograd makes for
``addmm`` with a row-major ``x`` and a column-major ``weight.t()`` (``mm_mat1_backward`` /
``mm_mat2_backward`` in PyTorch's ``torch/csrc/autograd/FunctionsManual.cpp``: ``grad.mm(weight)``
for ``x``, ``grad.t().mm(x)`` for the weight, which lands in the weight's layout), and the bias
gradient is the same sum over rows, in bf16 then cast to float32 as autocast's is.

:func:`applies` takes this path only in training with autograd recording, for a float32 CPU weight
that needs a gradient and a 2-D float input, in float32 or under CPU bf16 autocast, and not under
tracing, export or compilation; everywhere else the layer is ``nn.Linear``.
:func:`select_linear_kernels` re-classes the layers of at least 2^23 weights (float32 gradient
≥ 32 MB, glibc's largest ``mmap`` threshold): fc6/fc7 of the R-CNN family (VGG16, AlexNet, SPP-net's
12,800 → 4,096) and YOLOv1's 4,096-wide connected layer (50,176 → 4,096). The Trainer calls it
when it trains on the CPU. Memory: the buffers stay between steps (VGG16 fc6 + fc7: 0.48 GB in
float32, 0.96 GB in bf16) and ``model.eval()`` drops them; they take the place of the tensors a
step allocated anyway, so the peak is unchanged (VGG16 Faster R-CNN, build + two steps at batch 2:
1,684 / 1,684 MiB fp32, 1,691 / 1,692 MiB bf16, with / without).

Shape shorthand: N rows (RoIs), I = in_features, O = out_features.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks.winograd_conv import exporting

__all__ = ["BufferedLinear", "applies", "select_linear_kernels", "MIN_WEIGHTS"]

#: Input dtypes CPU bf16 autocast casts to bf16 for ``linear`` (float64 it leaves alone).
_AUTOCAST_INPUTS = (torch.float32, torch.bfloat16, torch.float16)
#: Layers of at least this many weights are re-classed (float32 gradient ≥ 32 MB).
MIN_WEIGHTS = 1 << 23


def _refs(t: torch.Tensor) -> int | None:
    """Tensor objects and storages referring to ``t``'s memory (None where PyTorch cannot say)."""
    try:
        return t._use_count() + torch._C._storage_Use_Count(t.untyped_storage()._cdata)
    except (AttributeError, RuntimeError):
        return None


class _Buffers:
    """A layer's kept buffers by name: the low-precision weight and weight gradient, the float32 weight gradient."""

    def __init__(self) -> None:
        self.slots: dict[str, tuple[torch.Tensor, int | None]] = {}

    def take(self, name: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """The kept CPU buffer ``name``, or a new one if it is referred to elsewhere (or changed shape)."""
        slot = self.slots.get(name)
        if slot is not None:
            buf, free_refs = slot
            if buf.shape == shape and buf.dtype == dtype and free_refs is not None and _refs(buf) == free_refs:
                return buf
        buf = torch.empty(shape, dtype=dtype)
        self.slots[name] = (buf, _refs(buf))
        return buf

    def __deepcopy__(self, memo: dict) -> "_Buffers":
        return _Buffers()  # a copy of the layer starts without buffers


class _BufferedLinearFn(torch.autograd.Function):
    """``F.linear`` as PyTorch computes it in float32 or under CPU bf16 autocast, on the layer's kept buffers."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # noqa: ANN001
                buffers: _Buffers, dtype: torch.dtype) -> torch.Tensor:
        if dtype == weight.dtype:
            w = weight
        else:
            w = buffers.take("weight", weight.shape, dtype)
            w.copy_(weight)
        x = x.to(dtype)
        out = torch.mm(x, w.t()) if bias is None else torch.addmm(bias.to(dtype), x, w.t())
        # as addmm's autograd: x only for the weight's gradient, the weight only for x's
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, w if ctx.needs_input_grad[0] else None)
        ctx.buffers = buffers
        ctx.has_bias = bias is not None
        ctx.dtype = dtype
        ctx.weight_shape = weight.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, w = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.mm(w)
        if ctx.needs_input_grad[1]:
            g32 = ctx.buffers.take("grad32", ctx.weight_shape, torch.float32)
            if ctx.dtype == torch.float32:
                torch.mm(grad.t(), x, out=g32)
            else:
                low = ctx.buffers.take("grad_low", ctx.weight_shape, ctx.dtype)
                torch.mm(grad.t(), x, out=low)
                g32.copy_(low)
            grad_w = g32.view(g32.shape)  # a new tensor object on the buffer: AccumulateGrad keeps it as is
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b, None, None


def applies(layer: nn.Linear, x: torch.Tensor) -> bool:
    """Whether :class:`BufferedLinear` runs its buffered path for ``x`` (the module docstring's rule)."""
    weight = layer.weight
    return (layer.training and torch.is_grad_enabled() and weight.requires_grad
            and weight.dtype == torch.float32 and weight.device.type == "cpu" and x.device.type == "cpu"
            and x.dim() == 2
            and (x.dtype == torch.float32 if not torch.is_autocast_enabled("cpu")
                 else torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.dtype in _AUTOCAST_INPUTS)
            and not exporting())


class BufferedLinear(nn.Linear):
    """An ``nn.Linear`` that keeps its weight casts and weight gradient in buffers in CPU training.

    Same arguments, parameters and state dict as ``nn.Linear``; made by :func:`select_linear_kernels`.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear's name)
        if applies(self, input):
            buffers = self.__dict__.get("_kept_buffers")
            if buffers is None:
                buffers = self.__dict__["_kept_buffers"] = _Buffers()
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
            return _BufferedLinearFn.apply(input, self.weight, self.bias, buffers, dtype)
        return F.linear(input, self.weight, self.bias)

    def train(self, mode: bool = True) -> "BufferedLinear":
        if not mode:
            self.__dict__.pop("_kept_buffers", None)  # evaluation: give the memory back
        return super().train(mode)


def select_linear_kernels(model: nn.Module, min_weights: int = MIN_WEIGHTS) -> int:
    """Re-classes every plain ``nn.Linear`` of ``model`` with at least ``min_weights`` weights as
    :class:`BufferedLinear`.

    Args:
        model: any module (in place; parameters, buffers and state dict unchanged).
        min_weights: the smallest weight count re-classed.

    Returns:
        The number of layers re-classed.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.numel() >= min_weights:
            module.__class__ = BufferedLinear
            count += 1
    return count
