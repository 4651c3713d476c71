"""SPP-net's pyramid pooler against a naive loop, window projection by hand, poolers' widths."""
from __future__ import annotations

import math

import pytest
import torch

from visiontasks.detection import (RoIAlign, RoIPool, SpatialPyramidPool, SpatialPyramidPooling2d, build_pooler,
                                   project_windows)


def _naive_spp(features: torch.Tensor, boxes: list[torch.Tensor], levels, stride: float) -> torch.Tensor:
    """Per window, per level, per bin: the paper's projection and max over the bin's cells."""
    _, c, h, w = features.shape
    rows = []
    for b, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in image_boxes.tolist():
            l, t = math.floor(x0 / stride) + 1, math.floor(y0 / stride) + 1
            r, btm = math.ceil(x1 / stride) - 1, math.ceil(y1 / stride) - 1
            if r < l:
                l = r = math.floor((x0 + x1) / 2 / stride)
            if btm < t:
                t = btm = math.floor((y0 + y1) / 2 / stride)
            l, r = min(max(l, 0), w - 1), min(max(r, 0), w - 1)
            t, btm = min(max(t, 0), h - 1), min(max(btm, 0), h - 1)
            r, btm = max(r, l), max(btm, t)
            ww, hh = r - l + 1, btm - t + 1
            parts = []
            for n in levels:
                out = torch.empty(c, n, n)
                for i in range(n):
                    ys, ye = t + math.floor(i * hh / n), t + math.ceil((i + 1) * hh / n)
                    for j in range(n):
                        xs, xe = l + math.floor(j * ww / n), l + math.ceil((j + 1) * ww / n)
                        out[:, i, j] = features[b, :, ys:ye, xs:xe].amax(dim=(1, 2))
                parts.append(out.flatten())
            rows.append(torch.cat(parts))
    return torch.stack(rows)


def test_spp_pooler_equals_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 13, 17, generator=g)
    boxes = [torch.tensor([[0.0, 0.0, 271.0, 207.0], [33.0, 40.0, 120.0, 90.0], [100.0, 100.0, 110.0, 108.0]]),
             torch.tensor([[5.0, 60.0, 200.0, 199.0], [250.0, 10.0, 400.0, 300.0]])]
    pooler = SpatialPyramidPool((6, 3, 2, 1), 1 / 16)
    out = pooler(feats, boxes, [(208, 272)] * 2)
    assert out.shape == (5, 5 * 50) and pooler.output_dim(5) == 250
    torch.testing.assert_close(out, _naive_spp(feats, boxes, (6, 3, 2, 1), 16.0))


def test_spp_width_is_fixed_for_any_window_size():
    feats = torch.randn(1, 8, 40, 40)
    pooler = build_pooler("spp", (6, 3, 2, 1), 1 / 16)
    for side in (4.0, 16.0, 50.0, 333.0, 639.0):
        out = pooler(feats, [torch.tensor([[0.0, 0.0, side, side / 2]])], [(640, 640)])
        assert out.shape == (1, 8 * 50)
    assert pooler(feats, [torch.zeros(0, 4)], [(640, 640)]).shape == (0, 400)


def test_window_projection_by_hand():
    # S = 16: left/top floor(x/16)+1, right/bottom ceil(x/16)-1; a too-small window takes its centre cell.
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [17.0, 33.0, 100.0, 47.0], [17.0, 17.0, 30.0, 30.0]])
    cells = project_windows(boxes, 16.0, (10, 10))
    # window 2: x 17 → 2, 100 → 6; y 33 → 3 but 47 → 2 < 3, so y takes the middle cell floor((3 + 2)/2) = 2.
    # window 3: x and y 17 → 2 but 30 → 1: both axes take the middle cell floor((2 + 1)/2) = 1.
    assert cells.tolist() == [[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 6.0, 2.0], [1.0, 1.0, 1.0, 1.0]]


def test_spp_classification_layer_gives_a_fixed_length():
    layer = SpatialPyramidPooling2d((4, 3, 2, 1))
    for h, w in ((13, 13), (10, 7), (1, 1), (24, 31)):
        assert layer(torch.randn(2, 3, h, w)).shape == (2, 3 * 30)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # level 1 is the global max, level 2 the quadrant maxima
    out = SpatialPyramidPooling2d((1, 2))(x)
    assert out.tolist() == [[15.0, 5.0, 7.0, 13.0, 15.0]]


def test_grid_poolers_say_their_width():
    assert RoIPool(7, 1 / 16).output_dim(512) == 512 * 49
    assert RoIAlign(14, 1 / 16).output_dim(1024) == 1024 * 196
    with pytest.raises(ValueError, match="levels"):
        SpatialPyramidPool((6, 0))
