"""RoI max pooling on a low-precision (bf16/fp16) feature map, equal to ``torchvision.ops.roi_pool``.

torchvision's CPU ``roi_pool`` wants the boxes in the dtype of the map (bf16 box corners would move
by up to 2–4 feature cells), so the bf16 path used to cast the map to float32 and pool there: one
thread, a scalar loop per channel (issue 24: ~107 ms CPU for 300 RoIs of a 512 × 38 × 50 map,
against ~35 ms here, ``/tmp`` A/B under load). Max pooling involves no arithmetic, and rounding to
bf16/fp16 is monotone, so pooling the rounded map equals rounding the pooled float32 values: the
result is what the next layer (fc6 under autocast) received before, bit for bit.

Bins are torchvision's (``torchvision/csrc/ops/cpu/roi_pool_kernel.cpp``, after Caffe's
``roi_pooling_layer.cpp`` of rbgirshick/fast-rcnn): corners ``round(x · scale)`` (half away from
zero, in double), ``roi_h = max(y1 − y0 + 1, 1)``, bin ``[floor(p · roi_h / P), ceil((p + 1) · roi_h / P))``
in float32, shifted by the corner and clipped to the map; an empty bin gives 0. Each bin's maximum is
a range-maximum query on a 2-D sparse table (maxima of 2^i × 2^j windows, only up to the largest bin
size): the maximum of its four corner windows, which overlap and cover the bin.

Shape shorthand: B = images, C = channels, H × W = map, P = output side, R = regions,
KH × KW = table levels.
"""
from __future__ import annotations

import torch

__all__ = ["roi_max_pool", "roi_bins"]


def roi_bins(boxes: torch.Tensor, output_size: int, spatial_scale: float, height: int, width: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's ``roi_pool`` bin edges of each box.

    Args:
        boxes: (R, 4) xyxy in input pixels.
        output_size: P.
        spatial_scale: feature cells per input pixel.
        height: H of the map.
        width: W of the map.

    Returns:
        ``(h_start, h_end, w_start, w_end)``, each (R, P) int64 cell indices (end exclusive).
    """
    scaled = boxes.double() * spatial_scale
    corners = torch.where(scaled >= 0, torch.floor(scaled + 0.5), torch.ceil(scaled - 0.5)).long()  # std::round
    x0, y0, x1, y1 = corners.unbind(1)
    bin_w = (x1 - x0 + 1).clamp(min=1).float() / output_size
    bin_h = (y1 - y0 + 1).clamp(min=1).float() / output_size
    p = torch.arange(output_size, dtype=torch.float32, device=boxes.device)
    h_start = (torch.floor(p * bin_h[:, None]).long() + y0[:, None]).clamp(0, height)
    h_end = (torch.ceil((p + 1) * bin_h[:, None]).long() + y0[:, None]).clamp(0, height)
    w_start = (torch.floor(p * bin_w[:, None]).long() + x0[:, None]).clamp(0, width)
    w_end = (torch.ceil((p + 1) * bin_w[:, None]).long() + x0[:, None]).clamp(0, width)
    return h_start, h_end, w_start, w_end


def _sparse_table(x: torch.Tensor, levels_h: int, levels_w: int) -> torch.Tensor:
    """(B, H, W, C) → (KH, KW, B, H, W, C): entry [i, j, b, h, w] = max of x[b, h:h+2^i, w:w+2^j]
    (entries whose window leaves the map are left unset; no query reads them)."""
    _, height, width, _ = x.shape
    table = x.new_empty((levels_h, levels_w) + tuple(x.shape))
    table[0, 0] = x
    for i in range(1, levels_h):
        s = 1 << (i - 1)
        torch.maximum(table[i - 1, 0, :, :height - s], table[i - 1, 0, :, s:], out=table[i, 0, :, :height - s])
    for j in range(1, levels_w):
        s = 1 << (j - 1)
        torch.maximum(table[:, j - 1, :, :, :width - s], table[:, j - 1, :, :, s:], out=table[:, j, :, :, :width - s])
    return table


def roi_max_pool(features: torch.Tensor, boxes: list[torch.Tensor], output_size: int,
                 spatial_scale: float) -> torch.Tensor:
    """``torchvision.ops.roi_pool(features, boxes, output_size, spatial_scale)`` without autograd.

    Args:
        features: (B, C, H, W), any dtype and memory layout (meant for bf16/fp16 channels-last).
        boxes: B tensors (R_i, 4) xyxy in input pixels (float32 or float64).
        output_size: P.
        spatial_scale: feature cells per input pixel.

    Returns:
        (R, C, P, P) contiguous, in ``features``' dtype, rows in the order of ``boxes``.
    """
    batch, channels, height, width = features.shape
    flat_boxes = torch.cat([b.reshape(-1, 4) for b in boxes])
    num = flat_boxes.shape[0]
    if num == 0:
        return features.new_zeros((0, channels, output_size, output_size))
    image = torch.cat([torch.full((len(b),), i, dtype=torch.long, device=features.device)
                       for i, b in enumerate(boxes)])
    h0, h1, w0, w1 = roi_bins(flat_boxes, output_size, spatial_scale, height, width)
    empty = (h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :]  # (R, P, P)
    # Level of each bin side: the largest 2^k <= its length (empty sides: 0, never read).
    level_h = torch.floor(torch.log2((h1 - h0).clamp(min=1).double())).long()
    level_w = torch.floor(torch.log2((w1 - w0).clamp(min=1).double())).long()
    levels_h, levels_w = int(level_h.max()) + 1, int(level_w.max()) + 1
    table = _sparse_table(features.permute(0, 2, 3, 1).contiguous(), levels_h, levels_w).view(-1, channels)
    h2, w2 = h1 - (1 << level_h), w1 - (1 << level_w)
    base = ((level_h[:, :, None] * levels_w + level_w[:, None, :]) * batch + image[:, None, None]) * (height * width)
    out = None
    for rows in (h0, h2):
        for cols in (w0, w2):
            index = torch.where(empty, 0, base + rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
            part = table.index_select(0, index)
            out = part if out is None else torch.maximum(out, part, out=out)
    out = out.view(num, output_size * output_size, channels).masked_fill_(empty.view(num, -1, 1), 0)
    return out.transpose(1, 2).contiguous().view(num, channels, output_size, output_size)
