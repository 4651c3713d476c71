"""Matcher and balanced sampler: labels against a plain-loop reference, sample sizes and ratios."""
from __future__ import annotations

import pytest
import torch

from visiontasks.detection import IGNORE, BalancedSampler, Matcher, inside_image


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _naive_rpn_labels(anchors, gts, fg=0.7, bg=0.3):
    """py-faster-rcnn anchor_target_layer, written as loops (no border filter)."""
    anchors, gts = anchors.tolist(), gts.tolist()
    ious = [[_iou(a, g) for g in gts] for a in anchors]
    labels = []
    for row in ious:
        best = max(row)
        labels.append(1 if best >= fg else (0 if best < bg else -1))
    for j in range(len(gts)):
        col = [row[j] for row in ious]
        best = max(col)
        for i, v in enumerate(col):
            if v == best and best > 0:
                labels[i] = 1
    return labels


def _random_boxes(n, scale=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = 5 + torch.rand(n, 2, generator=g) * scale / 2
    return torch.cat((xy, xy + wh), 1)


def test_rpn_labels_match_loop_reference():
    anchors, gts = _random_boxes(300, seed=1), _random_boxes(4, seed=2)
    labels, matched = Matcher(0.7, 0.3, 0.0, allow_low_quality=True)(anchors, gts)
    assert labels.tolist() == _naive_rpn_labels(anchors, gts)
    # matched GT of positives is the argmax IoU
    for i in torch.nonzero(labels == 1).squeeze(1).tolist():
        ious = [_iou(anchors[i].tolist(), g) for g in gts.tolist()]
        assert ious[matched[i]] == pytest.approx(max(ious))


def test_best_anchor_ties_are_all_positive():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # two anchors with the same IoU 0.25 (< 0.3, so negative by threshold alone), one with less
    anchors = torch.tensor([[0.0, 0.0, 10.0, 40.0], [0.0, 0.0, 40.0, 10.0], [0.0, 0.0, 10.0, 80.0]])
    labels, _ = Matcher(0.7, 0.3, 0.0, allow_low_quality=True)(anchors, gt)
    assert labels.tolist() == [1, 1, 0]
    labels, _ = Matcher(0.7, 0.3, 0.0, allow_low_quality=False)(anchors, gt)
    assert labels.tolist() == [0, 0, 0]


def test_gt_without_overlap_does_not_make_everything_positive():
    gt = torch.tensor([[500.0, 500.0, 510.0, 510.0]])
    anchors = _random_boxes(20, seed=3)
    labels, _ = Matcher(0.7, 0.3, 0.0, allow_low_quality=True)(anchors, gt)
    assert (labels == 0).all()


def test_border_anchors_ignored():
    anchors = torch.tensor([[-5.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0], [80.0, 80.0, 100.0, 101.0]])
    valid = inside_image(anchors, (100, 100))
    assert valid.tolist() == [False, True, False]
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    labels, _ = Matcher(0.7, 0.3, 0.0, allow_low_quality=True)(anchors, gt, valid)
    assert labels.tolist() == [IGNORE, 1, IGNORE]
    assert inside_image(anchors, (100, 100), allowed_border=5).tolist() == [True, True, True]


def test_roi_labels_with_background_lower_bound():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # IoU: 1.0, 0.5, 0.25, 0.05, 0.0
    rois = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 40.0],
                         [0.0, 0.0, 10.0, 200.0], [50.0, 50.0, 60.0, 60.0]])
    labels, _ = Matcher(0.5, 0.5, 0.1)(rois, gt)
    assert labels.tolist() == [1, 1, 0, IGNORE, IGNORE]
    labels, _ = Matcher(0.5, 0.5, 0.0)(rois, gt)
    assert labels.tolist() == [1, 1, 0, 0, 0]


def test_no_ground_truth_everything_background():
    rois = _random_boxes(10)
    for lo in (0.0, 0.1):
        labels, _ = Matcher(0.5, 0.5, lo)(rois, torch.zeros((0, 4)))
        assert (labels == 0).all()
    valid = torch.tensor([True] * 5 + [False] * 5)
    labels, _ = Matcher(0.7, 0.3, 0.0, True)(rois, torch.zeros((0, 4)), valid)
    assert labels.tolist() == [0] * 5 + [IGNORE] * 5


@pytest.mark.parametrize(
    "n_pos,n_neg,batch,frac,exp_pos,exp_neg",
    [
        (1000, 1000, 256, 0.5, 128, 128),  # RPN, plenty of both
        (10, 1000, 256, 0.5, 10, 246),      # few positives: filled with negatives
        (1000, 20, 256, 0.5, 128, 20),      # few negatives: smaller minibatch
        (500, 500, 128, 0.25, 32, 96),      # RoI head: at most 25 % foreground
        (0, 50, 128, 0.25, 0, 50),          # empty image
    ],
)
def test_sampler_counts(n_pos, n_neg, batch, frac, exp_pos, exp_neg):
    torch.manual_seed(0)
    labels = torch.cat((torch.full((n_pos,), 3), torch.zeros(n_neg, dtype=torch.int64),
                        torch.full((77,), IGNORE)))
    labels = labels[torch.randperm(labels.numel())]
    pos, neg = BalancedSampler(batch, frac)(labels)
    assert (pos.numel(), neg.numel()) == (exp_pos, exp_neg)
    assert pos.numel() <= frac * batch and pos.numel() + neg.numel() <= batch
    assert (labels[pos] > 0).all() and (labels[neg] == 0).all()
    assert torch.cat((pos, neg)).unique().numel() == exp_pos + exp_neg  # no duplicates, no ignored


def test_sampler_is_random():
    labels = torch.cat((torch.ones(1000, dtype=torch.int64), torch.zeros(1000, dtype=torch.int64)))
    torch.manual_seed(0)
    a, _ = BalancedSampler(256, 0.5)(labels)
    b, _ = BalancedSampler(256, 0.5)(labels)
    assert set(a.tolist()) != set(b.tolist())


@pytest.mark.parametrize("args", [(0.3, 0.7, 0.0), (0.7, 0.3, 0.5), (1.5, 0.3, 0.0)])
def test_bad_thresholds(args):
    with pytest.raises(ValueError):
        Matcher(*args)


def test_bad_sampler_arguments():
    with pytest.raises(ValueError):
        BalancedSampler(0, 0.5)
    with pytest.raises(ValueError):
        BalancedSampler(256, 1.5)
