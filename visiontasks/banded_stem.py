"""The first block of a VGG-style network run in pieces, so that its largest maps stay small.

VGG16's conv1 block (conv1_1, ReLU, conv1_2, ReLU, pool1) writes two 64-channel maps at the full
input size: at 600×800 (padded to 608×800) 62 MB each in bf16, 123 MB at a training batch of two,
822 MB for a chunk of 128 of R-CNN's 224² warped regions. glibc serves blocks over 32 MB with
``mmap`` and returns them with ``munmap``, so every call faults them in again page by page (30,402
minor faults in a bf16 ``predict()`` call). Run in pieces whose maps are at most 16 MB — which
glibc keeps in its heap and hands out again — the block stays in memory it already has: chunks of
whole samples where a sample's maps fit (R-CNN's regions: 2 at a time), else one sample at a time
in horizontal bands, each band's rows plus the rows its 3×3 convolutions need above and below (one
per convolution, two per pooled row), the rows a band computed from missing neighbours cut off after
each convolution. Measured with ``bench/banded_stem.py`` (2 threads, bf16 channels-last, min of 7,
2026-12-07, ms and minor faults of a call, whole → split): 1×3×608×800 (4 bands) 154 / 45,603 →
101 / 0; 2×3×608×800 (each image in 4 bands) 310 / 91,203 → 200 / 0; 128×3×224×224 (chunks of
2) 2,124 / 652,292 → 1,515 / 72,881; a whole bf16 ``predict()`` of Faster R-CNN VGG16, body
switched call by call, 952 → 923 ms (median 974 → 936), same detections. Banding R-CNN's regions
by rows instead (14 bands) took 3,164 ms against 2,104 whole (a ``/tmp`` A/B), so samples are
split first. Extending the bands through conv2 (254 → 229 ms) or conv3 (480 → 550 ms, a ``/tmp``
A/B) gained less or lost: deeper maps are small, and the halo rows cost more there.

A piece's rows are computed by the same convolution on the same input values, so the output is the
whole block's bit for bit wherever the convolution's value at a pixel does not depend on where the
map starts or on the other samples: oneDNN's direct convolution, which bf16 takes (tested with
``torch.equal``). NNPACK's Winograd kernel (fp32 VGG16, :mod:`visiontasks.winograd_conv`) computes in
tiles fixed to the map's origin, so fp32 runs whole.

:func:`stem_length` finds the block: the leading 3×3 stride-1 padding-1 convolutions (at least one)
and ReLUs of an ``nn.Sequential`` up to its first 2×2 stride-2 max pool (floor mode). VGG16's body
has one; FCN's conv1_1 pads by 100 and DeconvNet's has batch norm, so neither is split.
:func:`applies` splits only without autograd (inference, R-CNN's feature cache, and the frozen
conv1 of VGG16 detectors in training), on the CPU, with the convolutions in bf16 (a bf16 input, or
CPU bf16 autocast), outside tracing, export and compilation; :func:`plan` runs whole what is under
32 MB in all.

Shape shorthand: N batch, C channels, H × W the input; rows [a, b) are output rows of the block.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from visiontasks.max_pool import qualifies as pool_qualifies
from visiontasks.winograd_conv import exporting

__all__ = ["BandedSequential", "stem_length", "applies", "plan", "banded_forward", "stem_forward",
           "select_banded_stems", "WHOLE_BYTES", "BAND_BYTES"]

#: The block's largest map (all samples) must be at least this large to be split (glibc's largest mmap threshold).
WHOLE_BYTES = 32 << 20
#: Each piece's largest map is kept at or under this.
BAND_BYTES = 16 << 20


def _conv_qualifies(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3) and layer.stride == (1, 1)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros")


def stem_length(seq: nn.Sequential) -> int:
    """The number of leading layers of ``seq`` that form a bandable block (0 if none): 3×3/1/1
    convolutions and ReLUs, at least one convolution, ending with a 2×2/2 floor-mode max pool."""
    convs = 0
    for i, layer in enumerate(seq):
        if _conv_qualifies(layer):
            convs += 1
        elif isinstance(layer, nn.MaxPool2d):
            return i + 1 if convs and pool_qualifies(layer) and not layer.ceil_mode else 0
        elif type(layer) is not nn.ReLU:
            return 0
    return 0


def _rows_needed(layers: list[nn.Module], a: int, b: int) -> list[tuple[int, int]]:
    """Per layer, the rows [lo, hi) of its output that output rows [a, b) of the block need."""
    ranges = []
    for layer in reversed(layers):
        ranges.append((a, b))
        if isinstance(layer, nn.Conv2d):
            a, b = a - 1, b + 1
        elif isinstance(layer, nn.MaxPool2d):
            a, b = 2 * a, 2 * b
    ranges.append((a, b))  # of the block's input
    return ranges[::-1]


def _band(layers: list[nn.Module], x: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Output rows [a, b) of the block, computed from the input rows they need."""
    ranges = _rows_needed(layers, a, b)
    height = x.shape[-2]
    start, stop = max(ranges[0][0], 0), min(ranges[0][1], height)
    y = x[..., start:stop, :]
    for layer, (lo, hi) in zip(layers, ranges[1:]):
        y = layer(y)
        if isinstance(layer, nn.MaxPool2d):
            height, start = height // 2, start // 2  # bands start on even rows: no pooled row is split
        lo, hi = max(lo, 0), min(hi, height)
        y = y[..., lo - start:hi - start, :]  # drop rows computed from missing neighbours
        start = lo
    return y


def banded_forward(layers: list[nn.Module], x: torch.Tensor, bands: int) -> torch.Tensor:
    """The block ``layers`` (a :func:`stem_length` prefix) applied to ``x`` in ``bands`` horizontal bands.

    Args:
        layers: the block's layers, in order.
        x: (N, C, H, W).
        bands: how many bands (≥ 1; at most the output's rows).

    Returns:
        (N, C', H // 2, W // 2) as ``nn.Sequential(*layers)(x)``, in its memory format.
    """
    out_rows = x.shape[-2] // 2
    if not 1 <= bands <= max(out_rows, 1):
        raise ValueError(f"bands must be in [1, {max(out_rows, 1)}] for {x.shape[-2]} input rows, got {bands!r}")
    edges = [out_rows * i // bands for i in range(bands + 1)]
    return _cat([_band(layers, x, a, b) for a, b in zip(edges[:-1], edges[1:])], dim=-2)


def _cat(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` of the pieces, in their memory format (channels-last stays channels-last)."""
    out = torch.cat(parts, dim=dim)
    if parts[0].is_contiguous(memory_format=torch.channels_last) and not parts[0].is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _low_precision(x: torch.Tensor) -> bool:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16)
    return x.dtype == torch.bfloat16


def plan(layers: list[nn.Module], x: torch.Tensor) -> tuple[int, int]:
    """How :class:`BandedSequential` splits ``x``: ``(samples per chunk, bands per chunk)``.

    Whole (``(N, 1)``) when the block's largest map (bf16) is under :data:`WHOLE_BYTES`; else chunks
    of as many samples as fit in :data:`BAND_BYTES`, and where one sample's map alone exceeds it,
    one sample at a time in that many bands, rounded up (at least 8 output rows a band).
    """
    channels = max(layer.out_channels for layer in layers if isinstance(layer, nn.Conv2d))
    n, _, h, w = x.shape
    per_sample = channels * h * w * 2
    if n * per_sample < WHOLE_BYTES:
        return n, 1
    if per_sample <= BAND_BYTES:
        return max(BAND_BYTES // per_sample, 1), 1
    return 1, min(math.ceil(per_sample / BAND_BYTES), max(h // 2 // 8, 1))


def stem_forward(layers: list[nn.Module], x: torch.Tensor, samples: int, bands: int) -> torch.Tensor:
    """The block ``layers`` applied to ``x`` in chunks of ``samples`` samples, each in ``bands`` bands.

    Returns:
        (N, C', H // 2, W // 2) as ``nn.Sequential(*layers)(x)``, in its memory format.
    """
    parts = []
    for i in range(0, x.shape[0], samples):
        chunk = x[i:i + samples]
        if bands > 1:
            parts.append(banded_forward(layers, chunk, bands))
        else:
            for layer in layers:
                chunk = layer(chunk)
            parts.append(chunk)
    return _cat(parts, dim=0)


def _applicable_stem(seq: nn.Sequential, x: torch.Tensor) -> int:
    """:func:`stem_length` of ``seq`` where :func:`applies`, else 0."""
    if exporting() or x.device.type != "cpu" or x.dim() != 4 or not _low_precision(x):
        return 0
    k = stem_length(seq)
    if k and torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for layer in list(seq)[:k] for p in layer.parameters())):
        return 0
    return k


def applies(seq: nn.Sequential, x: torch.Tensor) -> bool:
    """Whether :class:`BandedSequential` may split ``x`` (the module docstring's rule; how is
    :func:`plan`'s)."""
    return _applicable_stem(seq, x) > 0


class BandedSequential(nn.Sequential):
    """An ``nn.Sequential`` whose leading conv block runs in chunks or bands where :func:`applies` says so.

    Same children and state dict as the ``nn.Sequential``; made by :func:`select_banded_stems`.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Sequential's name)
        k = _applicable_stem(self, input)
        if not k:
            return super().forward(input)
        layers = list(self)
        samples, bands = plan(layers[:k], input)
        if samples >= input.shape[0] and bands == 1:
            return super().forward(input)
        x = stem_forward(layers[:k], input, samples, bands)
        for layer in layers[k:]:
            x = layer(x)
        return x


def select_banded_stems(model: nn.Module) -> int:
    """Re-classes every plain ``nn.Sequential`` of ``model`` that starts with a bandable block
    (:func:`stem_length`) as :class:`BandedSequential`.

    Args:
        model: any module (in place; parameters, buffers and state dict unchanged).

    Returns:
        The number of modules re-classed.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Sequential and stem_length(module):
            module.__class__ = BandedSequential
            count += 1
    return count
