"""Spatial pyramid pooling (He et al. 2014, SPP-net): a fixed-length vector from any window size.

Two uses of one idea:

- :class:`SpatialPyramidPool` — the detection pooler (``pooler: spp``). Each window (a proposal
  in input pixels) is projected onto the feature map as the paper's appendix does: with S the
  stride, the left/top edge goes to cell ``floor(x / S) + 1`` and the right/bottom edge to
  ``ceil(x / S) - 1`` (:func:`project_windows`). The formula assumes the paper's padding (⌊p/2⌋
  per layer), under which cell i is centred at ``S·i``; "if the padding is not ⌊p/2⌋, we need to
  add a proper offset to x" — ``offset`` is the centre of cell 0 (``S·i + offset``, from
  :func:`~visiontasks.detection.receptive_field.receptive_field`: 15 for torchvision's AlexNet
  conv5, 7.5 for VGG16 conv5_3), subtracted from x before the formula, so the left edge goes to
  the first cell whose centre lies right of it and the right edge to the last cell whose centre
  lies left of it. Without it pooled regions sit ``offset`` pixels (one cell for AlexNet, half a
  cell for VGG16) right of and below the window. A window too small for that rule (right < left)
  collapses to the middle cell ``floor((left + right) / 2)``, as the released
  ``spm_pool_caffe_mex.cpp`` (l. 122-132), and cells are clipped to the map. (The released code
  rounds instead, ``floor((x − offset0 + offset)/S + 0.5) + 1`` and ``ceil((x − offset0 −
  offset)/S − 0.5) + 1`` on 1-based cells, l. 116-120, with ``offset0``/``offset`` read from the
  model package's ``spp_config``, which the repository does not hold; we keep the paper's formula.)
  For each level
  n ∈ ``levels`` (default {6, 3, 2, 1}, 50 bins) the window of w × h cells is divided into n × n
  bins, bin i spanning cells ``[floor(i·w/n), ceil((i+1)·w/n))`` — Caffe's RoI-pooling bins, so
  ``torchvision.ops.roi_pool`` on the projected cell box computes each level — and max-pooled.
  Levels are flattened (channel-major, as Caffe's ``Flatten`` of each level) and concatenated:
  (R, C · Σ n²) = (R, 50 C).
- :class:`SpatialPyramidPooling2d` — the classification layer that replaces the last pooling
  layer so that a network gives a fixed-length output for any input size (§2.3). Bins over the
  whole map follow the same rule (``adaptive_max_pool2d``). The paper's sliding-window form
  (window ``ceil(a/n)``, stride ``floor(a/n)``) gives the same bins whenever it covers the map,
  and skips the last cells when it does not (a = 10, n = 6); this form always covers the map.

Shape shorthand: B = images, C = channels, R = windows, D = C · Σ n².
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_pool

__all__ = ["SpatialPyramidPool", "SpatialPyramidPooling2d", "project_windows", "SPP_LEVELS"]

#: The pyramid of the SPP-net detection experiments: 6×6, 3×3, 2×2, 1×1 = 50 bins.
SPP_LEVELS = (6, 3, 2, 1)


def _levels(levels: int | Sequence[int]) -> tuple[int, ...]:
    out = (int(levels),) if isinstance(levels, (int, float)) else tuple(int(n) for n in levels)
    if not out or any(n <= 0 for n in out):
        raise ValueError(f"pyramid levels must be positive integers, got {levels!r}")
    return out


def project_windows(boxes: torch.Tensor, stride: float, feature_size: tuple[int, int],
                    offset: float = 0.0) -> torch.Tensor:
    """Projects windows (R, 4) xyxy in input pixels to inclusive feature-cell boxes (R, 4).

    Left/top: ``floor((x − offset) / S) + 1``; right/bottom: ``ceil((x − offset) / S) − 1``.

    Args:
        boxes: windows in input pixels.
        stride: input pixels per feature cell (S).
        feature_size: (H, W) of the feature map, for clipping.
        offset: centre of feature cell 0 in input pixels (cell i is centred at ``S·i + offset``;
            0 under the paper's ⌊p/2⌋ padding).

    Returns:
        (R, 4) float cell indices ``x0, y0, x1, y1`` with ``x0 <= x1`` and ``y0 <= y1``.
    """
    shifted = boxes - offset
    lo = torch.floor(shifted[:, :2] / stride) + 1
    hi = torch.ceil(shifted[:, 2:] / stride) - 1
    centre = torch.floor((lo + hi) / 2)
    bad = hi < lo
    lo = torch.where(bad, centre, lo)
    hi = torch.where(bad, centre, hi)
    limit = boxes.new_tensor([feature_size[1] - 1, feature_size[0] - 1])
    lo = torch.minimum(lo.clamp(min=0), limit)
    hi = torch.minimum(hi.clamp(min=0), limit)
    return torch.cat((lo, torch.maximum(hi, lo)), dim=1)


class SpatialPyramidPool(nn.Module):
    """SPP-net's detection pooler: (features, windows) → (R, C · Σ n²).

    Args:
        levels: pyramid levels n (n × n bins each); default (6, 3, 2, 1).
        spatial_scale: feature cells per input pixel (1/16 for stride 16).
        offset: centre of feature cell 0 in input pixels (see :func:`project_windows`; 0: the
            paper's padding; ``receptive_field(backbone).offset`` for the backbone's own).
    """

    def __init__(self, levels: int | Sequence[int] = SPP_LEVELS, spatial_scale: float = 1.0 / 16,
                 offset: float = 0.0) -> None:
        super().__init__()
        if spatial_scale <= 0:
            raise ValueError(f"spatial_scale must be positive, got {spatial_scale!r}")
        self.levels = _levels(levels)
        self.spatial_scale = float(spatial_scale)
        self.offset = float(offset)

    @property
    def num_bins(self) -> int:
        """Σ n² (50 for the default pyramid)."""
        return sum(n * n for n in self.levels)

    def output_dim(self, channels: int) -> int:
        """Flattened width of one pooled window: C · Σ n²."""
        return int(channels) * self.num_bins

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Args:
            features: (B, C, H, W).
            proposals: B tensors (R_i, 4) xyxy in input pixels.
            image_sizes: unused (part of the pooler interface).

        Returns:
            (R, D) pooled features in the order of ``proposals``.
        """
        feats = features.float()
        size = (int(features.shape[-2]), int(features.shape[-1]))
        cells = [project_windows(p.float(), 1.0 / self.spatial_scale, size, self.offset) for p in proposals]
        r = sum(len(c) for c in cells)
        if r == 0:
            return features.new_zeros(0, self.output_dim(features.shape[1]))
        # roi_pool rounds the corners and spans [x0, x1] inclusive: exactly the projected cells.
        out = [roi_pool(feats, cells, n, 1.0).flatten(1) for n in self.levels]
        return torch.cat(out, dim=1).to(features.dtype)


class SpatialPyramidPooling2d(nn.Module):
    """SPP layer for classification: (B, C, H, W) of any H, W → (B, C · Σ n²).

    Args:
        levels: pyramid levels; default (6, 3, 2, 1) — the paper's classification nets use
            {4, 3, 2, 1} or {6, 3, 2, 1}.
    """

    def __init__(self, levels: int | Sequence[int] = SPP_LEVELS) -> None:
        super().__init__()
        self.levels = _levels(levels)

    def output_dim(self, channels: int) -> int:
        return int(channels) * sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in self.levels], dim=1)
