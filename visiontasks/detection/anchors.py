"""Anchors of the Region Proposal Network (Ren et al. 2015, §3.1.1).

At every position of the stride-``s`` feature map, ``A = len(sizes) * len(ratios)`` anchors
are centred on the centre of that cell's ``s × s`` input patch, ``((x + 0.5) s, (y + 0.5) s)``
in continuous pixel coordinates (py-faster-rcnn's base anchor ``[0, 0, 15, 15]`` has the same
centre, 7.5 in its pixel-index coordinates). An anchor of size ``S`` and ratio ``r = h / w``
has area ``S²``: ``w = S / sqrt(r)``, ``h = S * sqrt(r)`` (py-faster-rcnn rounds these to whole
pixels, e.g. 184 × 96 instead of 181.0 × 90.5; we keep them exact). The paper uses sizes
(128, 256, 512) and ratios (0.5, 1, 2): 9 anchors.

Order: anchor ``a`` at cell ``(y, x)`` is row ``(y * W + x) * A + a``; within a cell, anchors
run over ratios first, sizes fastest (py-faster-rcnn's order). The RPN head lays its outputs
out the same way.

Shape shorthand: A = anchors per position, H×W = feature map, N = H·W·A.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["AnchorGenerator", "base_anchors"]


def base_anchors(sizes: Sequence[float], ratios: Sequence[float], stride: int,
                 device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``A`` anchors of cell (0, 0).

    Args:
        sizes: anchor sides ``S`` (square root of the area) in input pixels.
        ratios: height / width ratios.
        stride: feature stride; the cell centre is ``(stride / 2, stride / 2)``.
        device: where to create the tensor.
        dtype: its dtype.

    Returns:
        (A, 4) xyxy anchors, ratio-major then size.
    """
    half_wh = [(0.5 * s / math.sqrt(r), 0.5 * s * math.sqrt(r)) for r in ratios for s in sizes]
    c = 0.5 * stride
    rows = [(c - hw, c - hh, c + hw, c + hh) for hw, hh in half_wh]
    return torch.tensor(rows, device=device, dtype=dtype)


class AnchorGenerator(nn.Module):
    """All anchors of a feature map, cached per (size, device, dtype).

    Args:
        sizes: anchor sides in input pixels (paper: 128, 256, 512).
        ratios: height / width ratios (paper: 0.5, 1, 2).
        stride: stride of the feature map w.r.t. the input (16 for VGG16 conv5_3).
    """

    def __init__(self, sizes: Sequence[float] = (128, 256, 512), ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 stride: int = 16) -> None:
        super().__init__()
        if not sizes or any(float(s) <= 0 for s in sizes):
            raise ValueError(f"anchor sizes must be positive numbers, got {sizes!r}")
        if not ratios or any(float(r) <= 0 for r in ratios):
            raise ValueError(f"aspect ratios must be positive numbers, got {ratios!r}")
        if int(stride) <= 0:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.sizes = tuple(float(s) for s in sizes)
        self.ratios = tuple(float(r) for r in ratios)
        self.stride = int(stride)
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def num_anchors(self) -> int:
        """A, the number of anchors per feature-map position."""
        return len(self.sizes) * len(self.ratios)

    def forward(self, feature_size: tuple[int, int], device: torch.device,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Anchors for an ``H × W`` feature map.

        Args:
            feature_size: (H, W) of the feature map.
            device: device of the anchors.
            dtype: floating dtype of the anchors.

        Returns:
            (H·W·A, 4) xyxy anchors in input pixels, in the order described in the module docstring.
        """
        h, w = int(feature_size[0]), int(feature_size[1])
        key = (h, w, str(device), dtype)
        anchors = self._cache.get(key)
        if anchors is None:
            base = base_anchors(self.sizes, self.ratios, self.stride, device=device, dtype=dtype)
            sx = torch.arange(w, device=device, dtype=dtype) * self.stride
            sy = torch.arange(h, device=device, dtype=dtype) * self.stride
            yy, xx = torch.meshgrid(sy, sx, indexing="ij")
            shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
            anchors = (shifts + base[None]).reshape(-1, 4)
            if len(self._cache) > 32:  # many image sizes: keep the cache bounded
                self._cache.clear()
            self._cache[key] = anchors
        return anchors
