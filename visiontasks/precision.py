"""Numeric precision of training and inference: bf16/fp16 autocast, with fp32 where it matters.

Under ``torch.autocast`` the convolutions and matrix products run in the low precision; every other
op runs in the precision of its inputs. Box decoding in bfloat16 would round a 600-px coordinate to
a multiple of 2–4 px, so :func:`fp32_boundaries` casts the outputs of the network's parts back to
float32: every module without an ``nn.Sequential`` ancestor returns float32 (the layers inside a
``Sequential`` — VGG16's conv1_1 … conv5_3, fc6/fc7 — pass bf16 activations to each other). Losses,
box decoding, NMS and the evaluators thus see float32 tensors.

On the CPU bf16 is used only where the processor has native bf16 (AVX-512 BF16 / AMX, as oneDNN
reports it); elsewhere the request falls back to fp32 with one warning line. On CUDA ``fp16``
runs with a ``GradScaler`` in training, ``bf16`` without one.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import Any, Iterator

import torch
import torch.nn as nn

__all__ = ["PRECISIONS", "AMP_MODES", "cpu_bf16_supported", "resolve_precision", "resolve_amp", "fp32_boundaries",
           "cast_dense_weights", "autocast_forward", "LOW_PRECISION_OUTPUT", "autocast", "to_float32",
           "prefers_channels_last"]

#: Inference precisions (``load_model(..., precision=)``, ``--precision``).
PRECISIONS = ("fp32", "bf16")
#: Training precisions (``train.amp``); ``true`` means ``auto``, ``false`` means ``none``.
AMP_MODES = ("auto", "none", "fp16", "bf16")
_DTYPES = {"fp32": None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_log = logging.getLogger("visiontasks")


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: read the flags
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    _log.warning(message)


def _native(dtype: torch.dtype | None, device: torch.device, what: str) -> torch.dtype | None:
    if dtype is torch.bfloat16 and device.type == "cpu" and not cpu_bf16_supported():
        _warn_once(f"visiontasks: {what}: this CPU has no native bf16 (AVX-512 BF16/AMX); running in fp32")
        return None
    return dtype


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> torch.dtype | None:
    """The autocast dtype of an inference precision on ``device`` (None: plain fp32).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS` (quoted).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {'|'.join(PRECISIONS)}, got {precision!r}")
    return _native(_DTYPES[precision], torch.device(device), f"precision={precision}")


def resolve_amp(amp: str | bool | None, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: fp32 training).

    ``auto`` (also ``true`` and ``null``): float16 on CUDA; on the CPU bfloat16 where it is native
    (AVX-512 BF16 / AMX), else fp32 without a warning — chosen by measurement (docs/BENCHMARKS.md,
    "Training in bf16": the default detection and segmentation runs reach the fp32 metric within 1 point in
    0.67× the wall time). ``none`` (``false``): fp32. ``bf16``: bfloat16 (CPU: only with native
    bf16, else fp32 and one warning). ``fp16``: float16, CUDA only.

    Raises:
        ValueError: an unknown value, or ``fp16`` on the CPU (quoted).
    """
    device = torch.device(device)
    mode = amp
    if amp is None or isinstance(amp, bool):
        mode = "none" if amp is False else "auto"
    if mode not in AMP_MODES:
        raise ValueError(f"train.amp must be one of {'|'.join(AMP_MODES)} (or true/false), got {amp!r}")
    if mode == "auto":
        if device.type == "cuda":
            mode = "fp16"
        else:
            mode = "bf16" if device.type == "cpu" and cpu_bf16_supported() else "none"
    if mode == "fp16" and device.type != "cuda":
        raise ValueError(f"train.amp={amp!r} needs CUDA (fp16 is slow and unscaled on {device.type}); "
                         "use bf16 or none")
    return _native(_DTYPES[mode], device, f"train.amp={amp}")


def to_float32(obj: Any) -> Any:
    """Casts bf16/fp16 tensors inside (nested) tuples, lists and dicts to float32; the rest is kept."""
    if torch.is_tensor(obj):
        return obj.float() if obj.dtype in (torch.bfloat16, torch.float16) else obj
    if isinstance(obj, dict):
        return {k: to_float32(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(to_float32(v) for v in obj)
    return obj


#: Attribute name: a module whose ``vt_low_precision_output`` is true keeps its bf16/fp16 output
#: under :func:`fp32_boundaries` (set it only where every consumer is a layer run under autocast).
LOW_PRECISION_OUTPUT = "vt_low_precision_output"


def _cast_hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
    return to_float32(output)


def fp32_boundaries(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Makes every module of ``model`` without an ``nn.Sequential`` ancestor return float32.

    Except modules with a true attribute ``vt_low_precision_output`` (:data:`LOW_PRECISION_OUTPUT`):
    parts whose output only feeds further layers (the RoI pooler, the box head, the RPN's 3×3 conv);
    a cast to float32 there would be undone by autocast in the next layer (two copies for nothing;
    issue 24). Their children are still visited. A no-op outside autocast. Returns the hook
    handles (``handle.remove()`` undoes it); calling it again on the same model adds nothing.
    """
    if getattr(model, "_vt_fp32_boundaries", None):
        return model._vt_fp32_boundaries
    handles = []

    def visit(module: nn.Module, inside_sequential: bool) -> None:
        if not inside_sequential and not getattr(module, LOW_PRECISION_OUTPUT, False):
            handles.append(module.register_forward_hook(_cast_hook))
        for child in module.children():
            visit(child, inside_sequential or isinstance(module, nn.Sequential))

    visit(model, False)
    model.__dict__["_vt_fp32_boundaries"] = handles
    return handles


def cast_dense_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Stores the parameters of ``model``'s convolutions and linear layers in ``dtype`` (inference).

    Autocast would cast the fp32 weights again on every call (VGG16 Faster R-CNN: 137 M values per
    image; a one-off comparison under load gave 5.6 s per image against 3.2 s with bf16 weights).
    Those layers must then run under autocast (:func:`autocast_forward`). Normalisation layers
    keep their fp32 parameters.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            module.to(dtype)
    return model


def autocast_forward(model: nn.Module, device: str | torch.device, dtype: torch.dtype) -> nn.Module:
    """Makes every call of ``model`` run under ``torch.autocast`` in ``dtype`` (forward hooks), so
    callers that do not know its precision (the evaluation tools, user code) call it as before.

    Thread-safe: autocast's state is per thread, and so is the stack of entered contexts (each
    thread's ``leave`` exits the context its own ``enter`` opened, also with several threads calling
    one model at once — tests/test_api_threads.py)."""
    device_type = torch.device(device).type
    local = threading.local()

    def enter(_module: nn.Module, _inputs: Any) -> None:
        ctx = torch.autocast(device_type=device_type, dtype=dtype)
        ctx.__enter__()
        local.__dict__.setdefault("active", []).append(ctx)

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        local.active.pop().__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)  # also when forward raises
    return model


@contextlib.contextmanager
def autocast(device: str | torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on ``device``'s type in ``dtype``; plain fp32 when ``dtype`` is None."""
    device = torch.device(device)
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        yield


def prefers_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` runs channels-last: any model with 2-D convolutions (oneDNN's conv kernels
    are channels-last natively; VGG16 conv1_1 … conv5_3 measured 1.6× faster in fp32 and 2.1× in
    bf16 than NCHW, see ``bench/roofline.py``). Outputs equal NCHW's within float rounding."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
