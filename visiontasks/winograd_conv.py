"""fp32 3×3 convolutions by Winograd's minimal filtering (NNPACK, shipped inside PyTorch).

A 3×3 stride-1 convolution computed tile by tile in Winograd's transformed domain needs several times
fewer multiplications than the direct sum (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016, whose showcase was VGG). PyTorch's CPU wheels carry NNPACK, whose
``nnp_convolution_inference`` picks a Winograd or FFT tiling for the shape; PyTorch exposes it as
``torch._nnpack_spatial_convolution`` but never calls it for a batch under 16, and oneDNN (its
default) has no Winograd kernel on x86. Measured on this machine (2 threads, batch 1, fp32, ms;
``python bench/winograd_conv.py``):

==============================  =================  =============  ============
3×3 conv, fp32                  oneDNN NCHW / CL   NNPACK         faster
==============================  =================  =============  ============
64→64 on 600×800 (conv1_2)      294 / 199          135            NNPACK 1.5×
256→256 on 150×200 (conv3_x)    158 / 155           65            NNPACK 2.4×
512→512 on 75×100 (conv4_x)     155 / 158           59            NNPACK 2.6×
512→512 on 38×50 (conv5_x)       40 / 40            23            NNPACK 1.7×
512→512 on 28×28                 17                 15            even
1024→1024 on 14×14               32                 46            oneDNN 1.5×
32→32 on 80×80                    0.64               1.24         oneDNN 1.9×
==============================  =================  =============  ============

So the rule (:func:`applies`) is static, not timed, and results are reproducible run to run: a
``nn.Conv2d`` marked by :func:`mark` with a 3×3 kernel, stride 1, dilation 1, one group, zero
padding ≤ 1, at least :data:`MIN_CHANNELS` output channels and fp32 weights, on an fp32
NCHW CPU input of at least :data:`MIN_POSITIONS` output positions per image, outside autocast,
tracing and ONNX export. NNPACK reads and writes NCHW, so a model using it runs NCHW rather than
channels-last (``conv_select.inference_layout``); that costs the other layers, so only
architectures measured faster as a whole are marked: VGG16 (``backbones.vgg16_torchvision`` marks
conv1_1 … conv5_3; conv1_1, 3→64, NNPACK 71 ms against 122 for oneDNN NCHW). Measured whole,
``load_model(...).predict`` fp32, min of 3–20 calls, NCHW + NNPACK against channels-last oneDNN
(2026-12-06): Faster R-CNN VGG16 0.64–0.73× torchvision's time against 0.84–0.93×, FCN-8s 0.74×
its former time — but the default detector 1.08×, YOLOv1 1.05×, Fast YOLO 1.18× and the default
segmenter 1.29×, which stay unmarked and channels-last (docs/BENCHMARKS.md, "Winograd convolutions
for fp32 VGG16").

Training: :func:`winograd_conv2d` is an autograd function. The input gradient of a stride-1
convolution is itself a convolution of the output gradient with the kernel flipped and its in/out
channels swapped (padding ``2 - p``), so NNPACK computes it too; the weight and bias gradients are
PyTorch's own (``aten.convolution_backward``, oneDNN). Outputs and gradients equal the direct
convolution's within float rounding (relative error ~5e-6 against ~1e-6 for oneDNN, both measured
against float64; ``tests/test_winograd_conv.py``).

Caveats, each handled by falling back to PyTorch's own convolution:

- A call that NNPACK fails (its workspace not allocated, a status it refuses) returns PyTorch's
  convolution instead and turns the path off for the process, with one warning line.
- NNPACK needs AVX2 + FMA3 (x86-64) or NEON; elsewhere ``torch.backends.nnpack.is_available()``
  is False.
- NNPACK's thread pool is created once, with ``torch.get_num_threads()`` at its first call; a later
  ``torch.set_num_threads`` does not reach it, so after a change of thread count (or in a process
  forked after the pool was made, whose pool threads do not exist) the direct path runs.
- ``VISIONTASKS_WINOGRAD=0`` in the environment, or :func:`set_enabled(False) <set_enabled>`,
  turns it off (exactly oneDNN's numbers, as before this module).

Memory: PyTorch keeps NNPACK's workspace per calling thread, grown to the largest layer and never
freed: +437 MiB peak RSS for VGG16 Faster R-CNN predicting at 600×800 (2,015 → 2,452 MiB).

Shape shorthand: N batch, C in channels, O out channels, H×W the map.
"""
from __future__ import annotations

import logging
import os
import threading

import torch
import torch.nn as nn

__all__ = ["MIN_CHANNELS", "MIN_POSITIONS", "applies", "available", "exporting", "layer_qualifies", "mark",
           "model_qualifies", "set_enabled", "winograd_conv2d"]

#: Fewest output channels (32→32 on 80×80: oneDNN 0.64 ms, NNPACK 1.24; 64→64 breaks even at ~40×40).
MIN_CHANNELS = 64
#: Fewest output positions per image, H_out·W_out (50×50; below ~28×28 oneDNN wins).
MIN_POSITIONS = 2500

_state = {"enabled": os.environ.get("VISIONTASKS_WINOGRAD", "1") != "0", "pool": None}
_lock = threading.Lock()
_log = logging.getLogger("visiontasks")


def set_enabled(enabled: bool) -> None:
    """Turns the Winograd path on or off for this process (default: on unless ``VISIONTASKS_WINOGRAD=0``)."""
    _state["enabled"] = bool(enabled)


def available() -> bool:
    """Whether NNPACK can run here now: enabled, initialised on this CPU, and its thread pool (made at
    the first call in this process) matches the current process and ``torch.get_num_threads()``."""
    if not _state["enabled"] or not torch.backends.nnpack.is_available():  # is_available() initialises NNPACK
        return False
    pool = _state["pool"]
    return pool is None or pool == (os.getpid(), torch.get_num_threads())


def exporting() -> bool:
    """Whether the call is scripted, traced, exported to ONNX or compiled (PyTorch's own kernels then)."""
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() \
        or torch.compiler.is_compiling()


def _shape_qualifies(conv: nn.Module) -> bool:
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        return False
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.padding[0] != conv.padding[1] \
            or conv.padding[0] > 1:
        return False
    return conv.out_channels >= MIN_CHANNELS


def mark(module: nn.Module) -> int:
    """Opts the 3×3 stride-1 convolutions of ``module`` (≥ :data:`MIN_CHANNELS` output channels) into the
    Winograd path; returns how many were marked. An attribute of the layer, not of its state dict."""
    count = 0
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and _shape_qualifies(conv):
            conv.vt_winograd = True
            count += 1
    return count


def layer_qualifies(conv: nn.Module) -> bool:
    """Whether ``conv`` is a layer the rule can take, whatever its input: marked by :func:`mark`, an
    fp32 ``nn.Conv2d``, 3×3, stride 1, dilation 1, one group, zero padding 0 or 1, ≥ :data:`MIN_CHANNELS`
    output channels."""
    if not getattr(conv, "vt_winograd", False) or not isinstance(conv, nn.Conv2d):
        return False
    return conv.weight.dtype is torch.float32 and _shape_qualifies(conv)


def model_qualifies(model: nn.Module) -> bool:
    """Whether any layer of ``model`` can take the path (:func:`layer_qualifies`): such a model runs NCHW
    in fp32 inference (``conv_select.inference_layout``) and gets ``SelectedConv2d`` layers in fp32
    training (``engine.trainer``)."""
    return any(map(layer_qualifies, model.modules()))


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv`` on ``x`` takes the Winograd path (the rule in the module docstring)."""
    if not layer_qualifies(conv) or x.dim() != 4 or x.device.type != "cpu" or x.dtype is not torch.float32:
        return False
    if not x.is_contiguous():  # a channels-last model keeps oneDNN's kernels (no layout copies)
        return False
    if torch.is_autocast_enabled("cpu") or exporting():
        return False
    pad = conv.padding[0]
    return (x.shape[2] + 2 * pad - 2) * (x.shape[3] + 2 * pad - 2) >= MIN_POSITIONS and available()


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int) -> torch.Tensor:
    """NNPACK's convolution, one image per call (its batched entry point is the slower training kernel)."""
    if _state["pool"] is None:
        with _lock:
            if _state["pool"] is None:
                if not torch.backends.nnpack.is_available():  # also initialises NNPACK (needed before a call)
                    raise RuntimeError("NNPACK is not available on this CPU / PyTorch build")
                _state["pool"] = (os.getpid(), torch.get_num_threads())
    x, weight = x.contiguous(), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    outs = [torch._nnpack_spatial_convolution(x[i:i + 1], weight, bias, [pad, pad], [1, 1])
            for i in range(x.shape[0])]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _nnpack_or_direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int) -> torch.Tensor:
    """:func:`_nnpack`, or PyTorch's convolution where NNPACK fails (a failed allocation of its
    workspace, a status it refuses, a changed private API): then the path is turned off for this
    process with one warning line, and the call still returns the convolution."""
    if _state["enabled"]:  # (a backward pass after a failure goes straight to PyTorch's)
        try:
            return _nnpack(x, weight, bias, pad)
        except (RuntimeError, TypeError) as exc:
            _state["enabled"] = False
            _log.warning("visiontasks: NNPACK's convolution failed (%s); fp32 3x3 convolutions use PyTorch's "
                         "own from now on", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return torch.nn.functional.conv2d(x, weight, bias, padding=pad)


class _WinogradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pad, ctx.has_bias = pad, bias is not None
        return _nnpack_or_direct(x, weight, bias, pad)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if need_x:  # the transposed convolution: kernel flipped, in/out swapped, padding 2 - p
            flipped = weight.flip(2, 3).transpose(0, 1)
            grad_x = _nnpack_or_direct(grad, flipped, None, 2 - ctx.pad)
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [ctx.pad, ctx.pad], [1, 1],
                False, [0, 0], 1, [False, need_w, need_b and ctx.has_bias])
        return grad_x, grad_w, grad_b, None


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """A 3×3 stride-1 convolution of ``x`` (N, C, H, W) fp32 by NNPACK → (N, O, H + 2p - 2, W + 2p - 2),
    NCHW-contiguous, differentiable in ``x``, ``weight`` and ``bias``.

    Args:
        x: input; a channels-last input is copied to NCHW first.
        weight: (O, C, 3, 3).
        bias: (O,) or None.
        padding: zero padding p on every side, 0 or 1.
    """
    return _WinogradConv.apply(x, weight, bias, int(padding))
