"""The RPN's two loss weightings on a hand-computed case (Ren et al. eq. 1 vs py-faster-rcnn).

Setup: a 32×48 input, stride 16 → a 2×3 feature map (N_reg = 6 anchor locations), anchors of
sides 16 and 32 with ratio 1 (A = 2, 12 anchors, borders allowed). The ground truth is the first
anchor, [0, 0, 16, 16] (the cell centre is (8, 8)): one positive (IoU 1); the 32-px anchor at the
same place has IoU 256/1024 = 0.25 and every other anchor less, so all 11 others are negatives and
all 12 are sampled (256 allowed). The head's weights are zero: every logit is its bias 0
(BCE = ln 2 per anchor) and every delta 0.5 against a target of 0 (smooth L1 with beta 1/9:
0.5 − 1/18 = 4/9 per coordinate, 16/9 for the positive).

- py-faster-rcnn: objectness 12·ln 2 / 12 = ln 2; box (16/9) / 12 = 4/27.
- paper: objectness 12·ln 2 / N_cls = 12·ln 2 / 256; box λ·(16/9) / N_reg = 10·(16/9)/6 = 80/27.
"""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from visiontasks.detection.anchors import AnchorGenerator
from visiontasks.detection.rpn import RegionProposalNetwork
from visiontasks.detection.settings import RPNSettings
from visiontasks.registry import get_model


def _losses(weighting: str, images: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    rpn = RegionProposalNetwork(4, AnchorGenerator((16, 32), (1.0,), 16), objectness="sigmoid",
                                settings=RPNSettings(allow_border=True, loss_weighting=weighting))
    for layer in (rpn.head.conv, rpn.head.cls_logits, rpn.head.bbox_pred):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    torch.nn.init.constant_(rpn.head.bbox_pred.bias, 0.5)
    rpn.train()
    batch = ImageList(torch.zeros(images, 3, 32, 48), [(32, 48)] * images)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]])} for _ in range(images)]
    _, losses = rpn(batch, torch.randn(images, 4, 2, 3), targets)
    return losses


def test_py_faster_rcnn_weighting_by_hand():
    losses = _losses("py-faster-rcnn")
    assert losses["loss_objectness"].item() == pytest.approx(math.log(2), rel=1e-5)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(4 / 27, rel=1e-5)


def test_paper_weighting_by_hand():
    losses = _losses("paper")
    assert losses["loss_objectness"].item() == pytest.approx(12 * math.log(2) / 256, rel=1e-5)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(10 * (16 / 9) / 6, rel=1e-5)


def test_paper_weighting_is_per_image_then_averaged():
    # two identical images: the same per-image terms, so the same average (py-faster-rcnn's
    # pooled division would also give the same; the paper's per-image N_reg must not double)
    one, two = _losses("paper", 1), _losses("paper", 2)
    for key in one:
        assert two[key].item() == pytest.approx(one[key].item(), rel=1e-5)


def test_weighting_reaches_the_rpn_and_bad_values_fail():
    model = get_model("faster_rcnn", num_classes=3, backbone="small")
    assert model.proposer.loss_weighting == "py-faster-rcnn" and model.proposer.loss_lambda == 10.0
    model = get_model("faster_rcnn", num_classes=3, backbone="small", rpn={"loss_weighting": "paper", "loss_lambda": 5})
    assert model.proposer.loss_weighting == "paper" and model.proposer.loss_lambda == 5.0
    with pytest.raises(ValueError, match="loss_weighting"):
        get_model("faster_rcnn", num_classes=3, backbone="small", rpn={"loss_weighting": "eq1"})
    with pytest.raises(ValueError, match="loss_lambda"):
        get_model("faster_rcnn", num_classes=3, backbone="small", rpn={"loss_lambda": 0})
