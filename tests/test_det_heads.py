"""RPN and RoI head in isolation: output layout, proposal selection vs a loop reference, sampling, losses."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from visiontasks.detection import (IGNORE, AnchorGenerator, FastRCNNPredictor, Matcher, RegionProposalNetwork,
                                   RoIHead, RoIPool, RPNHead)
from visiontasks.detection.settings import RPNSettings


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _greedy_nms(boxes, thresh):
    keep = []
    for i, b in enumerate(boxes):
        if all(_iou(b, boxes[j]) <= thresh for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("objectness", ["softmax", "sigmoid"])
def test_rpn_head_layout(objectness):
    torch.manual_seed(0)
    a, h, w = 3, 2, 3
    head = RPNHead(4, 5, a, objectness)
    x = torch.randn(1, 4, h, w)
    logits, deltas = head(x)
    t = torch.relu(head.conv(x))
    raw, raw_d = head.cls_logits(t)[0], head.bbox_pred(t)[0]
    assert raw.shape[0] == (2 * a if objectness == "softmax" else a)
    for y in range(h):
        for xx in range(w):
            for k in range(a):
                i = (y * w + xx) * a + k
                # softmax: channels [0, A) background, [A, 2A) object; P(object) = sigmoid(f - b)
                exp = raw[a + k, y, xx] - raw[k, y, xx] if objectness == "softmax" else raw[k, y, xx]
                torch.testing.assert_close(logits[0, i], exp)
                torch.testing.assert_close(deltas[0, i], raw_d[4 * k:4 * k + 4, y, xx])
    if objectness == "softmax":
        prob = torch.softmax(torch.stack((raw[0], raw[a])), 0)[1]
        torch.testing.assert_close(torch.sigmoid(logits[0, 0:h * w * a:a]).view(h, w), prob)


def _rpn(**kwargs):
    torch.manual_seed(0)
    rpn = RegionProposalNetwork(8, AnchorGenerator((16, 32, 64), (0.5, 1.0, 2.0), 16), settings=RPNSettings(**kwargs))
    torch.nn.init.normal_(rpn.head.cls_logits.weight, std=1.0)  # spread-out scores: no ties
    return rpn


def test_proposals_match_loop_reference():
    rpn = _rpn(pre_nms_top_n_train=1000, pre_nms_top_n_test=100, post_nms_top_n_train=1000, post_nms_top_n_test=30,
               min_size=16.0)
    torch.nn.init.zeros_(rpn.head.bbox_pred.weight)  # zero deltas: proposals are clipped anchors
    rpn.eval()
    feats = torch.randn(1, 8, 4, 5)
    size, scale = (60, 75), 0.5  # min side = 16 * 0.5 = 8 input pixels
    with torch.no_grad():
        props, losses = rpn(ImageList(torch.zeros(1, 3, 64, 80), [size]), feats, scales=[scale])
        logits, _ = rpn.head(feats)
    assert losses == {}
    anchors = AnchorGenerator((16, 32, 64), (0.5, 1.0, 2.0), 16)((4, 5), torch.device("cpu")).tolist()
    order = sorted(range(len(anchors)), key=lambda i: -float(logits[0, i]))[:100]
    boxes = []
    for i in order:
        x0, y0, x1, y1 = anchors[i]
        b = [min(max(x0, 0), 75), min(max(y0, 0), 60), min(max(x1, 0), 75), min(max(y1, 0), 60)]
        if b[2] - b[0] >= 8 and b[3] - b[1] >= 8:
            boxes.append(b)
    expected = [boxes[i] for i in _greedy_nms(boxes, 0.7)][:30]
    torch.testing.assert_close(props[0], torch.tensor(expected))


def test_rpn_losses_by_hand_at_zero_weights():
    rpn = _rpn(batch_size_per_image=64)
    torch.nn.init.zeros_(rpn.head.cls_logits.weight)
    torch.nn.init.zeros_(rpn.head.bbox_pred.weight)
    rpn.train()
    images = ImageList(torch.zeros(2, 3, 96, 96), [(96, 96), (80, 90)])
    targets = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)},
               {"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([1])}]
    props, losses = rpn(images, torch.randn(2, 8, 6, 6), targets)
    assert len(props) == 2 and all(p.shape[1] == 4 for p in props)
    # all logits 0: BCE = ln 2 for every sampled anchor, whatever its label
    assert losses["loss_objectness"].item() == pytest.approx(math.log(2.0), rel=1e-5)
    assert losses["loss_rpn_box_reg"].item() > 0
    _, losses = rpn(images, torch.randn(2, 8, 6, 6), [targets[0], targets[0]])
    assert losses["loss_rpn_box_reg"].item() == 0.0


@pytest.mark.parametrize("allow_border", [False, True])
def test_rpn_ignores_cross_border_anchors(allow_border):
    rpn = _rpn(allow_border=allow_border).train()
    seen = []
    real = rpn.sampler
    rpn.sampler = lambda labels: (seen.append(labels), real(labels))[1]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([1])}]
    rpn(ImageList(torch.zeros(1, 3, 96, 96), [(80, 90)]), torch.randn(1, 8, 6, 6), targets)
    anchors = rpn.anchor_generator((6, 6), torch.device("cpu"))
    crossing = (anchors[:, :2] < 0).any(1) | (anchors[:, 2] > 90) | (anchors[:, 3] > 80)
    assert crossing.any() and (~crossing).any()
    expected, _ = Matcher(0.7, 0.3, 0.0, True)(anchors, targets[0]["boxes"], None if allow_border else ~crossing)
    assert torch.equal(seen[0], expected)
    assert (seen[0][crossing] == IGNORE).all() != allow_border


def test_rpn_rejects_given_proposals():
    with pytest.raises(ValueError, match="own proposals"):
        _rpn()(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), torch.randn(1, 8, 2, 2), None,
               [torch.zeros((1, 4))])


def _roi_head(num_classes=3, **kwargs):
    torch.manual_seed(0)
    box_head = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(4 * 2 * 2, 16))
    return RoIHead(RoIPool(2, 1 / 16), box_head, FastRCNNPredictor(16, num_classes, **kwargs))


def test_roi_sampling_ratios_and_gt_added():
    head = _roi_head()
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[20.0, 20.0, 80.0, 90.0], [100.0, 40.0, 180.0, 120.0]])
    jitter = (torch.rand(600, 4, generator=g) - 0.5) * 60
    props = torch.cat((gt[0] + jitter[:300], gt[1] + jitter[300:])).clamp(0, 200)
    props[:, 2:] = torch.maximum(props[:, 2:], props[:, :2] + 4)
    torch.manual_seed(0)
    rois, labels, box_targets = head.sample([props], [{"boxes": gt, "labels": torch.tensor([1, 2])}])
    assert rois[0].shape[0] == labels.numel() == 128
    n_fg = int((labels > 0).sum())
    assert n_fg == 32 and box_targets.shape == (32, 4)  # ≤ 25 % foreground, and plenty available
    assert set(labels[:n_fg].tolist()) <= {1, 2} and (labels[n_fg:] == 0).all()
    # no proposals at all: the GT boxes themselves are the (only) RoIs
    rois, labels, box_targets = head.sample([torch.zeros((0, 4))], [{"boxes": gt, "labels": torch.tensor([1, 2])}])
    assert labels.tolist() == [1, 2] or labels.tolist() == [2, 1]
    assert sorted(map(tuple, rois[0].tolist())) == sorted(map(tuple, gt.tolist()))
    torch.testing.assert_close(box_targets, torch.zeros(2, 4))


def test_roi_losses_by_hand_at_zero_weights():
    head = _roi_head(num_classes=4).train()
    for layer in (head.predictor.cls_score, head.predictor.bbox_pred):
        torch.nn.init.zeros_(layer.weight)
    gt = {"boxes": torch.tensor([[0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([3])}
    _, losses = head(torch.randn(1, 4, 4, 4), [torch.tensor([[5.0, 0.0, 40.0, 40.0], [0, 30, 40, 64]])],
                     [(64, 64)], [gt])
    assert losses["loss_classifier"].item() == pytest.approx(math.log(4.0), rel=1e-5)  # uniform over K = 4
    # Sampled: proposal 0 (IoU 0.875, fg), the GT itself (fg, target 0), proposal 1 (IoU 0.156, bg): 3 RoIs.
    # Proposal 0 → GT with weights (10, 10, 5, 5): dx = 10·(20 − 22.5)/35, dw = 5·log(40/35), dy = dh = 0;
    # zero deltas give smooth-L1 (beta 1) 0.5·dx² + 0.5·dw², averaged over the 3 sampled RoIs.
    dx, dw = 10 * (20 - 22.5) / 35, 5 * math.log(40 / 35)
    assert losses["loss_box_reg"].item() == pytest.approx((0.5 * dx**2 + 0.5 * dw**2) / 3, rel=1e-5)


def test_postprocess_threshold_nms_order_and_cap():
    head = _roi_head(num_classes=3, score_thresh=0.05, nms_thresh=0.3, detections_per_img=3).eval()
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 70.0, 90.0],
                          [-5.0, -5.0, 120.0, 20.0]])
    # class probabilities (bg, c1, c2) per proposal, given as log-probabilities
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.01, 0.49], [0.3, 0.3, 0.4]])
    deltas = torch.zeros(4, 3, 4)
    out = head.predictor.inference(probs.log(), deltas, [props], [(64, 100)])[0]
    # box 1 (c1, 0.7) is suppressed by box 0 (c1, 0.8, IoU 0.82); box 0 as class 2 (0.1) is not
    # suppressed (other class) but falls below the cap; c1 on box 2 (0.01) is under the threshold.
    expected_scores = [0.8, 0.49, 0.4]
    torch.testing.assert_close(out["scores"], torch.tensor(expected_scores))
    assert out["labels"].tolist() == [1, 2, 2]
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 64.0],
                                                           [0.0, 0.0, 100.0, 20.0]]))
    assert out["labels"].dtype == torch.int64


def test_roi_head_argument_checks():
    with pytest.raises(ValueError, match="num_classes"):
        _roi_head(num_classes=1)
    with pytest.raises(ValueError, match="nms_thresh"):
        _roi_head(nms_thresh=0.0)
