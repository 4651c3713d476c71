"""Anchors: the 9 base anchors and the grid shifts, by hand."""
from __future__ import annotations

import math

import pytest
import torch

from visiontasks.detection import AnchorGenerator, base_anchors

R2 = math.sqrt(2.0)


def _box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_nine_base_anchors_by_hand():
    # Centre of cell (0, 0) is (8, 8); area S², ratio r = h / w: w = S / sqrt(r), h = S * sqrt(r).
    # Order: ratios (0.5, 1, 2), sizes (128, 256, 512) fastest, as py-faster-rcnn.
    expected = []
    for r_w, r_h in ((R2, 1 / R2), (1.0, 1.0), (1 / R2, R2)):
        for s in (128, 256, 512):
            expected.append(_box(8, 8, s * r_w, s * r_h))
    got = base_anchors((128, 256, 512), (0.5, 1.0, 2.0), 16)
    torch.testing.assert_close(got, torch.tensor(expected))
    # py-faster-rcnn's 1:1 anchors are [-56, -56, 71, 71] etc. in inclusive pixels (x2 + 1 = 72).
    torch.testing.assert_close(got[3], torch.tensor([-56.0, -56.0, 72.0, 72.0]))
    torch.testing.assert_close(got[5], torch.tensor([-248.0, -248.0, 264.0, 264.0]))


def test_grid_shifts_and_order():
    gen = AnchorGenerator((128, 256, 512), (0.5, 1.0, 2.0), 16)
    assert gen.num_anchors == 9
    h, w = 3, 5
    anchors = gen((h, w), torch.device("cpu"))
    assert anchors.shape == (h * w * 9, 4)
    base = base_anchors((128, 256, 512), (0.5, 1.0, 2.0), 16)
    for y in range(h):
        for x in range(w):
            rows = anchors[(y * w + x) * 9:(y * w + x + 1) * 9]
            shift = torch.tensor([16.0 * x, 16.0 * y, 16.0 * x, 16.0 * y])
            torch.testing.assert_close(rows, base + shift)


def test_small_sizes_and_dtype():
    gen = AnchorGenerator((32,), (1.0,), 16)
    a = gen((2, 2), torch.device("cpu"), torch.float64)
    assert a.dtype == torch.float64
    expected = [_box(8, 8, 32, 32), _box(24, 8, 32, 32), _box(8, 24, 32, 32), _box(24, 24, 32, 32)]
    torch.testing.assert_close(a, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [{"sizes": ()}, {"sizes": (0,)}, {"ratios": (-1,)}, {"stride": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AnchorGenerator(**kwargs)
