"""The context module of Yu & Koltun (ICLR 2016, §3 and Table 1): multi-scale context by dilated convolutions.

Seven 3×3 convolutions with dilations 1, 1, 2, 4, 8, 16, 1, each followed by the truncation
``max(·, 0)``, then a 1×1 convolution to C channels (no truncation). The receptive field grows to
67×67 at the resolution of the input (the front-end's stride-8 class scores, C = K). Widths:

=======  ===  ===  ===  ===  ====  ====  ====  ===
layer    1    2    3    4    5     6     7     8
basic    C    C    C    C    C     C     C     C
large    2C   2C   4C   8C   16C   32C   32C   C
=======  ===  ===  ===  ===  ====  ====  ====  ===

Initialisation (the paper found the usual random schemes ineffective):

* basic, eq. (4): identity, ``k(t, a) = 1[t = 0] 1[a = b]`` — the module passes its input through.
* large, eq. (5): layer i → i+1 with widths c_i → c_{i+1}:
  ``k(t, a) = C / c_{i+1}`` if ``t = 0`` and ``floor(a C / c_i) = floor(b C / c_{i+1})``, else ε,
  ε ~ N(0, σ²) with σ ≪ C / c_{i+1}; here ``σ = init_noise · C / c_{i+1}`` (default 1e-3; 0 gives the
  exact identity but leaves the duplicated channels symmetric, so training could not separate them).
  Every input channel is spread evenly over c/C output channels, which sum back to it in layer 8.
  Biases are zero.

Because of the truncations, the module is the identity at initialisation on **non-negative** input;
on signed input it returns ``max(x, 0)`` (up to ε) — this is the paper's design, kept as is.
Layers are zero-padded by their dilation ("same" convolutions), so the output has the input's size.

Shape shorthand: ``(B, C, h, w) -> (B, C, h, w)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ContextModule", "CONTEXT_DILATIONS", "context_widths"]

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
_LARGE_MULTIPLIERS = (2, 2, 4, 8, 16, 32, 32)
_KINDS = ("basic", "large")


def context_widths(channels: int, kind: str) -> tuple[int, ...]:
    """Output widths of the 8 layers (Table 1): the 7 dilated 3×3 layers, then the final 1×1."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    mult = (1,) * 7 if kind == "basic" else _LARGE_MULTIPLIERS
    return tuple(m * channels for m in mult) + (channels,)


def _identity_init(conv: nn.Conv2d, channels: int, noise: float, generator: torch.Generator | None) -> None:
    """Eq. (5) (eq. (4) when the widths are equal and noise is 0) on a conv with odd kernel."""
    c_out, c_in, k, _ = conv.weight.shape
    value = channels / c_out
    weight = torch.randn(conv.weight.shape, generator=generator) * (noise * value)
    group_in = torch.arange(c_in) * channels // c_in    # floor(a C / c_i)
    group_out = torch.arange(c_out) * channels // c_out  # floor(b C / c_{i+1})
    connect = (group_out[:, None] == group_in[None, :]).float()
    weight[:, :, k // 2, k // 2] = torch.where(connect.bool(), value, weight[:, :, k // 2, k // 2])
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.zero_()


class ContextModule(nn.Module):
    """Args:
        channels: C, the number of input and output feature maps (the number of classes in the paper).
        kind: "basic" (C channels throughout) or "large" (Table 1's growing widths).
        init_noise: σ of eq. (5) relative to C / c_{i+1} (large module only; the basic module uses
            eq. (4) without noise, as the paper does).
        generator: optional RNG for the noise.
    """

    def __init__(self, channels: int, kind: str = "basic", init_noise: float = 1e-3,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if init_noise < 0:
            raise ValueError(f"init_noise must be >= 0, got {init_noise!r}")
        widths = context_widths(channels, kind)
        self.kind = kind
        noise = 0.0 if kind == "basic" else init_noise
        layers: list[nn.Module] = []
        in_ch = channels
        for dilation, out_ch in zip(CONTEXT_DILATIONS, widths):
            conv = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
            _identity_init(conv, channels, noise, generator)
            layers += [conv, nn.ReLU(inplace=True)]
            in_ch = out_ch
        final = nn.Conv2d(in_ch, channels, 1)
        _identity_init(final, channels, noise, generator)
        layers.append(final)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
