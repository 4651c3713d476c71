"""BoxCoder: encode/decode against hand-computed deltas (R-CNN appendix C)."""
from __future__ import annotations

import math

import pytest
import torch

from visiontasks.detection import BBOX_CLIP, BoxCoder

# Reference P = [0, 0, 10, 20]: w 10, h 20, centre (5, 10).
# Ground truth G = [2, 4, 22, 24]: w 20, h 20, centre (12, 14).
P = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
G = torch.tensor([[2.0, 4.0, 22.0, 24.0]])
# dx = (12 - 5) / 10, dy = (14 - 10) / 20, dw = log(20 / 10), dh = log(20 / 20)
UNIT = [0.7, 0.2, math.log(2.0), 0.0]


def test_encode_unit_weights_by_hand():
    torch.testing.assert_close(BoxCoder().encode(G, P), torch.tensor([UNIT]))


def test_encode_fast_rcnn_weights_by_hand():
    # weights (10, 10, 5, 5) = targets divided by std (0.1, 0.1, 0.2, 0.2)
    expected = torch.tensor([[7.0, 2.0, 5 * math.log(2.0), 0.0]])
    torch.testing.assert_close(BoxCoder((10, 10, 5, 5)).encode(G, P), expected)


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (10, 10, 5, 5)])
def test_decode_inverts_encode(weights):
    torch.manual_seed(0)
    xy = torch.rand(50, 2) * 100
    ref = torch.cat((xy, xy + 1 + torch.rand(50, 2) * 80), 1)
    xy = torch.rand(50, 2) * 100
    gt = torch.cat((xy, xy + 1 + torch.rand(50, 2) * 80), 1)
    coder = BoxCoder(weights)
    torch.testing.assert_close(coder.decode(coder.encode(gt, ref), ref), gt, atol=1e-3, rtol=1e-5)


def test_decode_by_hand_and_class_specific_layout():
    deltas = torch.tensor([[[0.0, 0.0, 0.0, 0.0], UNIT]])  # (N=1, K=2, 4)
    out = BoxCoder().decode(deltas, P)
    assert out.shape == (1, 2, 4)
    torch.testing.assert_close(out[0, 0], P[0])
    torch.testing.assert_close(out[0, 1], G[0])


def test_decode_clamps_log_size():
    # dw = 10 would make the box e^10 wider; it is clamped at log(1000/16): 62.5 × wider.
    assert BBOX_CLIP == pytest.approx(math.log(62.5))
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, 10.0, 0.0]]), P)
    torch.testing.assert_close(out, torch.tensor([[5 - 312.5, 0.0, 5 + 312.5, 20.0]]))


def test_bad_weights():
    with pytest.raises(ValueError, match="weights"):
        BoxCoder((1, 1, 0, 1))
