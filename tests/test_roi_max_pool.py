"""RoI max pooling on bf16/fp16 maps (issue 24) equals torchvision's ``roi_pool`` in float32, rounded."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.ops import roi_pool

from visiontasks.detection.poolers import RoIPool
from visiontasks.detection.roi_max_pool import roi_bins, roi_max_pool
from visiontasks.precision import LOW_PRECISION_OUTPUT, fp32_boundaries


def _boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 900 - 100  # some start outside the map
    wh = torch.rand(n, 2, generator=gen) * 500
    return torch.cat([xy, xy + wh], 1)


def test_bins_hand_computed() -> None:
    # Box (16, 32)-(63, 95) at scale 1/16: corners round(1, 2, 3.94, 5.94) = (1, 2, 4, 6); roi 4 × 5 cells;
    # P = 2: bin_w = 2 → columns [1, 3), [3, 5); bin_h = 2.5 → rows [2, 2+ceil(2.5)=5), [2+2, 2+5=7) clipped to H = 6.
    h0, h1, w0, w1 = roi_bins(torch.tensor([[16.0, 32.0, 63.0, 95.0]]), 2, 1 / 16, 6, 10)
    assert h0.tolist() == [[2, 4]] and h1.tolist() == [[5, 6]]
    assert w0.tolist() == [[1, 3]] and w1.tolist() == [[3, 5]]


def test_hand_computed_max_and_empty_bin() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4).to(torch.bfloat16)
    # Whole map, P = 1: max 11. A box entirely left of the map: every bin empty → 0.
    out = roi_max_pool(x, [torch.tensor([[0.0, 0.0, 3.0, 2.0], [-50.0, 0.0, -40.0, 2.0]])], 1, 1.0)
    assert out.flatten().tolist() == [11.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("size", [1, 3, 7])
def test_equals_torchvision(dtype: torch.dtype, size: int) -> None:
    gen = torch.Generator().manual_seed(size)
    for trial, (h, w) in enumerate([(1, 1), (5, 9), (38, 50), (17, 3)]):
        feats = torch.randn(2, 6, h, w, generator=gen).to(dtype)
        if trial % 2:
            feats = feats.contiguous(memory_format=torch.channels_last)
        boxes = [_boxes(gen, 11), _boxes(gen, 4)]
        expected = roi_pool(feats.float(), boxes, size, 1 / 16).to(dtype)
        got = roi_max_pool(feats, boxes, size, 1 / 16)
        assert got.dtype == dtype and got.is_contiguous()
        assert torch.equal(got, expected)


def test_no_boxes() -> None:
    assert roi_max_pool(torch.zeros(1, 4, 5, 5), [torch.zeros(0, 4)], 7, 0.5).shape == (0, 4, 7, 7)


def test_pooler_bf16_under_autocast_fp32_unchanged() -> None:
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 8, 20, 30, generator=gen)
    boxes = [_boxes(gen, 9)]
    pooler = RoIPool(7, 1 / 16)
    with torch.no_grad():
        fp32 = pooler(feats, boxes, [(320, 480)])
        assert fp32.dtype == torch.float32 and torch.equal(fp32, roi_pool(feats, boxes, 7, 1 / 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = pooler(feats, boxes, [(320, 480)])
    # Rounding is monotone, so pooling the rounded map = rounding the float32 pooling.
    assert low.dtype == torch.bfloat16 and torch.equal(low, fp32.to(torch.bfloat16))


def test_pooler_training_keeps_torchvision_backward() -> None:
    feats = torch.randn(1, 4, 10, 10, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = RoIPool(2, 1.0)(feats, [torch.tensor([[0.0, 0.0, 9.0, 9.0]])], [(10, 10)])
    assert out.dtype == torch.float32 and out.grad_fn is not None


def test_fp32_boundaries_skips_marked_modules() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            setattr(self.a, LOW_PRECISION_OUTPUT, True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), self.b(x)

    net = Net()
    fp32_boundaries(net)
    seen = {}
    net.a.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o.dtype))
    net.b.register_forward_hook(lambda m, i, o: seen.__setitem__("b", o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_a, out_b = net(torch.randn(2, 3))
    # The marked layer's hook list has no cast: its output reaches the caller of `a` in bf16; the
    # network's own outputs are still float32 (Net is not marked).
    assert seen["a"] == torch.bfloat16
    assert out_a.dtype == torch.float32 and out_b.dtype == torch.float32
    assert len(net._vt_fp32_boundaries) == 2  # Net and b, not a
