"""Inference convolutions on small feature maps: oneDNN or one GEMM, whichever this CPU runs faster.

PyTorch runs every CPU convolution through oneDNN. On small maps with many input channels oneDNN's
fp32 kernel is far from the machine's matmul speed, while the same convolution written as im2col
(``F.unfold``) and one matrix product runs at it. Measured here (Xeon with AVX-512 BF16 and AMX, torch 2.14.1, 2 threads,
batch 1, ``python bench/conv_select.py``):

==============================  ===========  ===========  ==============
3×3 conv, fp32                  oneDNN       unfold+mm    faster
==============================  ===========  ===========  ==============
1024→1024 on 7×7 (YOLO)         17–19 ms      6.0 ms      GEMM, 2.9×
1024→1024 on 14×14, stride 2     25 ms        7.1 ms      GEMM, 3.6×
1024→1024 on 14×14               35 ms       21 ms        GEMM, 1.6×
512→512 on 28×28                 17 ms       22 ms        oneDNN, 1.3×
512→512 on 37×37 (VGG16 conv5)   20 ms       31 ms        oneDNN, 1.5×
==============================  ===========  ===========  ==============

Which one wins depends on the shape, the processor and the library versions, so nothing is
decided from a table: :func:`select_conv_kernels` lets every ``nn.Conv2d`` whose output has at most
``max_positions`` positions (N·H_out·W_out; larger maps always stay on oneDNN, which wins there and
where im2col's copy would be large) time both ways on its first inference call for each input
shape, dtype and autocast state, and keep the faster — the CPU analogue of
``torch.backends.cudnn.benchmark``. Both compute the same sums (outputs equal within float
rounding, ``tests/test_conv_select.py``); training, autograd, CUDA, tracing and ONNX export always
take PyTorch's own path.

Threads: several threads may run one model at once (a web server's pool). The choices are a dict
written once per key; one layer times at a time (a process-wide lock, tried without waiting: a
thread that finds it taken runs oneDNN and leaves the choice to a later call), so no two threads
time the same choice. Timings taken while other threads compute may pick the slower kernel;
the outputs are the same either way, and once a choice is made every call with that key uses it.

Shape shorthand: N batch, C in channels, O out channels, K = C·kh·kw, L = H_out·W_out.
"""
from __future__ import annotations

import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks import winograd_conv
from visiontasks.banded_stem import select_banded_stems
from visiontasks.max_pool import select_pool_kernels

__all__ = ["SelectedConv2d", "select_conv_kernels", "gemm_conv2d", "inference_layout"]

ONEDNN, GEMM = "onednn", "gemm"
_TIMING = threading.Lock()  # held by the one layer timing its two kernels


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def gemm_conv2d(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv`` (groups 1, zero padding) on ``x`` (N, C, H, W) as im2col + one matmul → (N, O, H_out, W_out).

    The result has ``x``'s memory format (channels-last in, channels-last out).
    """
    n, _, h, w = x.shape
    kh, kw = conv.kernel_size
    ho = _output_size(h, kh, conv.stride[0], conv.padding[0], conv.dilation[0])
    wo = _output_size(w, kw, conv.stride[1], conv.padding[1], conv.dilation[1])
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    cols = F.unfold(x.contiguous(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, K, L)
    if not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        # a channels-last weight is laid out (O, kh, kw, C): flatten it without a copy and put the
        # (small) columns in the same (kh, kw, C) order instead
        flat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
        cols = cols.view(n, weight.shape[1], kh * kw, -1).transpose(1, 2).reshape(n, flat.shape[1], -1)
    else:
        flat = weight.reshape(weight.shape[0], -1)
    out = flat @ cols  # (O, K) @ (N, K, L) → (N, O, L)
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1)
    out = out.view(n, -1, ho, wo)
    if channels_last:  # unfold is fast on NCHW; small maps make both copies cheap
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class SelectedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that, at CPU inference on small maps, runs the faster of oneDNN and GEMM, and on
    large fp32 3×3 maps (inference and training) NNPACK's Winograd kernel (:mod:`visiontasks.winograd_conv`).

    Same parameters and state dict as ``nn.Conv2d``; made by :func:`select_conv_kernels`, which
    re-classes existing layers (weights untouched). ``choices`` maps (input shape, dtype, autocast
    dtype or None, channels-last) → ``"onednn"`` or ``"gemm"``.
    """

    max_positions: int = 512

    def _eligible(self, x: torch.Tensor) -> bool:
        if self.training or torch.is_grad_enabled() or x.device.type != "cpu" or x.dim() != 4:
            return False
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str) \
                or winograd_conv.exporting():
            return False
        n, _, h, w = x.shape
        ho = _output_size(h, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0])
        wo = _output_size(w, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1])
        return 0 < n * ho * wo <= self.max_positions

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if winograd_conv.applies(self, input):  # large fp32 3×3 maps, inference and training
            return winograd_conv.winograd_conv2d(input, weight, bias, self.padding[0])
        if not self._eligible(input):
            return super()._conv_forward(input, weight, bias)
        amp = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        key = (tuple(input.shape), input.dtype, amp, input.is_contiguous(memory_format=torch.channels_last))
        choices = self.__dict__.setdefault("choices", {})
        choice = choices.get(key)
        if choice is None:  # time both once after a warm-up call each; the first result is the answer
            out = super()._conv_forward(input, weight, bias)
            if not _TIMING.acquire(blocking=False):  # another thread is timing: choose on a later call
                return out
            try:
                if key not in choices:
                    onednn = _seconds(lambda: super(SelectedConv2d, self)._conv_forward(input, weight, bias))
                    gemm_conv2d(input, self, weight, bias)
                    gemm = _seconds(lambda: gemm_conv2d(input, self, weight, bias))
                    choices[key] = GEMM if gemm < onednn else ONEDNN
            finally:
                _TIMING.release()
            return out
        if choice == GEMM:
            return gemm_conv2d(input, self, weight, bias)
        return super()._conv_forward(input, weight, bias)


def select_conv_kernels(model: nn.Module, max_positions: int = 512) -> int:
    """Re-classes every plain ``nn.Conv2d`` in ``model`` as :class:`SelectedConv2d` (in place).

    Args:
        model: any module; its weights and state dict are unchanged.
        max_positions: largest N·H_out·W_out for which GEMM is tried (larger maps stay on oneDNN).

    Returns:
        The number of layers re-classed.
    """
    if not isinstance(max_positions, int) or isinstance(max_positions, bool) or max_positions < 1:
        raise ValueError(f"max_positions must be a positive int, got {max_positions!r}")
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SelectedConv2d
            module.max_positions = max_positions
            count += 1
        elif isinstance(module, SelectedConv2d):
            module.max_positions = max_positions
    return count


def inference_layout(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """The memory layout ``load_model()`` runs a model in (in place): channels-last for models with
    2-D convolutions and, on the CPU, small-map conv kernels chosen by measurement, 2×2 max pools
    without indices (:mod:`visiontasks.max_pool`) and, in bf16, VGG16's conv1 block in pieces
    (:mod:`visiontasks.banded_stem`). An fp32 model
    with layers for NNPACK's Winograd kernel (:func:`visiontasks.winograd_conv.layer_qualifies`, on a
    CPU where it runs) stays NCHW: NNPACK reads and writes NCHW, and a layout copy around each such
    layer would cost more than channels-last gains on the others.

    Returns:
        ``model``.
    """
    from visiontasks.precision import prefers_channels_last

    cpu = torch.device(device).type == "cpu"
    winograd = cpu and winograd_conv.available() and winograd_conv.model_qualifies(model)
    if prefers_channels_last(model) and not winograd:
        model.to(memory_format=torch.channels_last)
    if cpu:
        select_conv_kernels(model)
        select_pool_kernels(model)  # 2×2 max pools without PyTorch's indices (visiontasks/max_pool.py)
        select_banded_stems(model)  # bf16: VGG16's conv1 block in chunks or bands (visiontasks/banded_stem.py)
    return model
