"""Where a feature cell looks in the image: stride and centre offset of a conv/pool stack.

SPP-net's window projection (He et al. 2014, appendix "Mapping a Window to Feature Maps") places
each window corner at the feature cell whose receptive-field centre is closest to it. The paper
pads every layer of filter size p by ⌊p/2⌋, which puts the centre of cell x' at ``S·x'`` in the
image, and notes that with other padding "we need to add a proper offset". This module computes
that offset from the layers themselves: a layer with kernel k (dilation d: effective kernel
``k_e = d(k − 1) + 1``), stride s and padding p maps output cell j to input position
``s·j − p + (k_e − 1)/2``; composing the layers gives

    centre(i) = S·i + offset,  S = Π s,  offset = Σ_l S_{l−1} · ((k_e,l − 1)/2 − p_l),

with ``S_{l−1}`` the stride before layer l. For torchvision's AlexNet conv5 (conv1 k11 s4 p2,
pool k3 s2 p0, …) this gives S = 16, offset = 15; for VGG16 conv5_3 (3×3 convs p1, 2×2 pools
s2) S = 16, offset = 7.5; for a stack that follows the paper's ⌊p/2⌋ rule with odd kernels,
offset = 0. Coordinates are pixel indices (the box convention, docs/CONTRACTS.md).

Shape shorthand: none (geometry only).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch.nn as nn

__all__ = ["ReceptiveField", "receptive_field", "projection_offset"]

# Layers that keep each cell where it is (no spatial mixing, or mixing across channels only).
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.LocalResponseNorm, nn.Dropout,
              nn.Dropout2d, nn.BatchNorm2d, nn.GroupNorm, nn.Identity, nn.SiLU, nn.GELU)
_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of a feature map w.r.t. the input.

    Attributes:
        stride: S, input pixels per feature cell.
        offset: centre of cell 0 in input pixel indices (cell i is centred at ``S·i + offset``).
        size: side of each cell's receptive field in input pixels.
    """

    stride: float
    offset: float
    size: float

    def centre(self, i: float) -> float:
        """Input position of the centre of feature cell ``i``."""
        return self.stride * i + self.offset


def _square(value, layer: nn.Module, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"{type(layer).__name__} has a non-square {name} {tuple(value)}; receptive-field "
                             "geometry is computed for square layers only")
        value = value[0]
    if isinstance(value, str):
        raise ValueError(f"{type(layer).__name__} has padding {value!r}; give explicit integer padding")
    return int(value)


def _leaves(module: nn.Module):
    if isinstance(module, _WINDOWED) or isinstance(module, _POINTWISE):
        yield module
    elif isinstance(module, nn.Sequential):
        for child in module:
            yield from _leaves(child)
    elif hasattr(module, "body") and isinstance(module.body, nn.Module) and module.body is not module:
        yield from _leaves(module.body)  # a Backbone: its conv body
    else:
        raise ValueError(f"cannot derive the receptive field through {type(module).__name__}: only nn.Sequential "
                         "stacks of Conv2d / MaxPool2d / AvgPool2d and point-wise layers are supported")


def receptive_field(module: nn.Module) -> ReceptiveField:
    """Stride, centre offset and size of the last feature map of a sequential conv/pool stack.

    Args:
        module: an ``nn.Sequential`` (nested ones allowed) of ``Conv2d`` / ``MaxPool2d`` /
            ``AvgPool2d`` and point-wise layers (ReLU, LRN, norms, dropout), or a backbone whose
            ``body`` is one.

    Returns:
        The :class:`ReceptiveField` of the stack's output.

    Raises:
        ValueError: a layer whose geometry is unknown (a residual block, a non-square kernel …), named.
    """
    stride, offset, size = 1.0, 0.0, 1.0
    for layer in _leaves(module):
        if not isinstance(layer, _WINDOWED):
            continue
        k = _square(layer.kernel_size, layer, "kernel_size")
        s = _square(layer.stride if layer.stride is not None else k, layer, "stride")
        p = _square(layer.padding, layer, "padding")
        d = _square(getattr(layer, "dilation", 1), layer, "dilation")
        k_eff = d * (k - 1) + 1
        offset += stride * ((k_eff - 1) / 2.0 - p)
        size += (k_eff - 1) * stride
        stride *= s
    return ReceptiveField(stride, offset, size)


def projection_offset(backbone: nn.Module) -> float:
    """The ``offset`` of SPP-net's window projection for ``backbone`` (centre of its cell 0).

    Args:
        backbone: a backbone with a ``stride`` attribute and a sequential conv ``body``.

    Returns:
        ``receptive_field(backbone).offset``; 0.0 (the paper's ⌊p/2⌋ convention, with a warning)
        for a body whose geometry cannot be derived (a residual network).

    Raises:
        ValueError: the derived stride disagrees with ``backbone.stride``.
    """
    try:
        rf = receptive_field(backbone)
    except ValueError as exc:
        warnings.warn(f"SPP window projection uses offset 0 (the paper's padding): {exc}", stacklevel=2)
        return 0.0
    declared = getattr(backbone, "stride", None)
    if declared is not None and float(declared) != rf.stride:
        raise ValueError(f"{type(backbone).__name__} declares stride {declared} but its layers give {rf.stride:g}")
    return rf.offset
