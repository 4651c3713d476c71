"""2×2 stride-2 max pooling on the CPU as two element-wise maxima, without the indices PyTorch computes.

PyTorch's CPU ``max_pool2d`` always runs ``max_pool2d_with_indices``: it writes an int64 index per
output element even when no gradient is wanted, and its NCHW kernel and its bfloat16 kernels are
slow. VGG16, the darknet backbones and the dilation front-end pool with 2×2 windows of stride 2,
where the same result is the element-wise maximum of the window's four strided views (the maximum
of the rows pairwise, then of the columns). Measured on this machine (2 threads, ms, minimum of 7
interleaved calls, VGG16's pool1 input at 600×800 — 64 channels, 608×800 — for one image and for
a training batch of two; ``python bench/max_pool.py``, 2026-12-06):

================================  ====================  ==================
2×2 max pooling, 64×608×800       ``F.max_pool2d``      two maxima
================================  ====================  ==================
fp32, NCHW, batch 1 / 2           95 / 261              11 / 87
bf16, NCHW, batch 1 / 2           88 / 236              11 / 24
bf16, channels-last, batch 1 / 2  5.5 / 58              4.9 / 10
fp32, channels-last, batch 1 / 2  8.0 / 79              9.1 / 79 (not taken)
================================  ====================  ==================

Whole ``load_model(...).predict`` calls of Faster R-CNN VGG16 (the same model, its four pools switched
call by call; ``bench/max_pool.py --models``): fp32 1,504 → 1,447 ms (it runs NCHW, NNPACK's layout
in :mod:`visiontasks.winograd_conv`, where PyTorch's kernel is slowest), bf16 944 → 928 ms.

So :func:`applies` takes the maxima for a :class:`PairwiseMaxPool2d` (kernel 2, stride 2, no
padding, dilation 1, no indices returned; ``ceil_mode`` only on even sizes, where it changes
nothing) on a 4-D CPU input, except fp32 channels-last (no gain measured) and under tracing, ONNX
export or compilation (PyTorch's ``max_pool2d`` is what exports). The values are the same: a
maximum involves no arithmetic, NaN propagates as in PyTorch's kernel, and odd sizes drop the last
row or column as floor mode does.

Inputs that need a gradient (training above frozen layers) take PyTorch's kernel: its backward sends
each window's gradient to one element through the stored indices, where the maxima would split it
between tied elements, and a backward rebuilding the indices from the saved input (tried) was
slower than PyTorch's on 8 of 12 training shapes (bf16 channels-last 2×256×152×200: 55 against 16 ms
forward + backward). Frozen layers (VGG16's conv1–conv2 in Faster R-CNN) and
inference need none.

Shape shorthand: N batch, C channels, H×W the input map, Ho×Wo = H//2 × W//2.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.winograd_conv import exporting

__all__ = ["PairwiseMaxPool2d", "max_pool_2x2", "qualifies", "applies", "select_pool_kernels"]


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2, 2)`` of a (N, C, H, W) tensor as two element-wise maxima → (N, C, Ho, Wo).

    Same values and memory format as ``F.max_pool2d``; for inputs that need no gradient (with one,
    ``torch.maximum`` would share the gradient of tied elements where PyTorch's pooling sends it
    to one).
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])  # (N, C, Ho, 2·Wo)
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def qualifies(pool: nn.Module) -> bool:
    """Whether ``pool`` is an ``nn.MaxPool2d`` of kernel 2, stride 2, padding 0, dilation 1 returning no indices."""
    if not isinstance(pool, nn.MaxPool2d) or pool.return_indices:
        return False
    pair = nn.modules.utils._pair
    return (pair(pool.kernel_size) == (2, 2) and pair(pool.stride or pool.kernel_size) == (2, 2)
            and pair(pool.padding) == (0, 0) and pair(pool.dilation) == (1, 1))


def applies(pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`max_pool_2x2` runs for ``pool`` on ``x`` (the rule in the module docstring)."""
    if exporting() or not qualifies(pool) or x.device.type != "cpu" or x.dim() != 4 or min(x.shape) == 0 \
            or min(x.shape[-2:]) < 2:
        return False  # (a map under 2×2 is PyTorch's error to raise)
    if pool.ceil_mode and (x.shape[-2] % 2 or x.shape[-1] % 2):
        return False  # ceil mode pools the odd last row/column alone: PyTorch's kernel
    if not x.is_floating_point() or (torch.is_grad_enabled() and x.requires_grad):
        return False
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return not (x.dtype == torch.float32 and channels_last)


class PairwiseMaxPool2d(nn.MaxPool2d):
    """An ``nn.MaxPool2d`` that runs :func:`max_pool_2x2` where :func:`applies` says so, else PyTorch's.

    Same arguments and (empty) state dict as ``nn.MaxPool2d``; made by :func:`select_pool_kernels`.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.MaxPool2d's name)
        if applies(self, input):
            return max_pool_2x2(input)
        return super().forward(input)


def select_pool_kernels(model: nn.Module) -> int:
    """Re-classes every plain ``nn.MaxPool2d`` of ``model`` that :func:`qualifies` as :class:`PairwiseMaxPool2d`.

    Args:
        model: any module (in place; parameters, buffers and state dict unchanged).

    Returns:
        The number of layers re-classed.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.MaxPool2d and qualifies(module):
            module.__class__ = PairwiseMaxPool2d
            count += 1
    return count

