"""In-network upsampling by transposed convolution initialised to bilinear interpolation (FCN §3.3).

Long et al. upsample by a factor ``f`` with a "deconvolution" of kernel ``2f`` and stride ``f``
whose filter is the bilinear kernel (Caffe's ``bilinear`` filler, the reference
``surgery.upsample_filt``): class ``c`` maps only to class ``c``. The output of such a layer,
cropped by ``f / 2`` at the top/left, equals ``F.interpolate(scale_factor=f, mode="bilinear",
align_corners=False)`` away from the borders (the hat function of width ``f`` centred on each
input pixel). FCN fixes the final upsampling to bilinear; its ×2 layers are learned in the paper's
text and fixed in the released code (``fcn.py``, ``learn_upsampling``).

Shape shorthand: ``(B, C, h, w) -> (B, C, (h - 1)·f + 2f, (w - 1)·f + 2f)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["bilinear_kernel", "bilinear_upsampler"]


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The (channels, channels, k, k) weight of a channel-wise bilinear upsampler (zero off the diagonal).

    For ``k = 2f`` (factor ``f``) the 1-D taps are ``1 - |t - c| / f``, ``c = f - 0.5``, ``t = 0 … k-1``;
    the 2-D kernel is their outer product (``f = 2``: ``[0.25, 0.75, 0.75, 0.25]``).

    Args:
        channels: number of channels C (input = output).
        kernel_size: k.

    Returns:
        float32 tensor of shape (C, C, k, k), as ``nn.ConvTranspose2d(C, C, k).weight`` expects.
    """
    if channels < 1 or kernel_size < 1:
        raise ValueError(f"channels and kernel_size must be >= 1, got {channels!r}, {kernel_size!r}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    t = torch.arange(kernel_size, dtype=torch.float32)
    taps = 1 - (t - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = taps[:, None] * taps[None, :]
    return weight


def bilinear_upsampler(channels: int, factor: int, learnable: bool) -> nn.ConvTranspose2d:
    """``nn.ConvTranspose2d(C, C, 2f, stride=f, bias=False)`` initialised to bilinear interpolation.

    Args:
        channels: C.
        factor: integer upsampling factor f (2, 8, 16 or 32 in FCN).
        learnable: False freezes the weight (``requires_grad=False``), as FCN does for its final layer.

    Returns:
        The layer; crop its output by ``f // 2`` to align it with ``F.interpolate`` (FCN crops with
        the offsets of its own coordinate mapping instead, see ``fcn.py``).
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    layer.weight.requires_grad_(learnable)
    return layer
