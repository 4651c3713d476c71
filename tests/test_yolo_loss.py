"""YOLOv1's loss (equation 3): target encoding, responsible predictor, √w√h, empty images, same-cell rule.

Values are computed by hand or by ``naive_loss`` below, a plain per-cell Python loop over the
paper's equation written independently of ``visiontasks.detection.yolo.loss``.
"""
from __future__ import annotations

import math

import pytest
import torch

from visiontasks.detection.yolo.loss import LOSS_NAMES, YOLOLoss, encode_targets

S, B, C = 7, 2, 3
D = 5 * B + C
IMG = (448, 448)  # one cell = 64 px


def target(boxes, labels):
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64)}


# ---------------------------------------------------------------- the reference: a plain loop over eq. 3
def _iou(a, b):
    """a, b = (cx, cy, w, h) in image fractions."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def naive_loss(pred, targets, img=IMG, s=S, nb=B, nc=C, l_coord=5.0, l_noobj=0.5):
    """Equation 3, one image, one cell, one predictor at a time; the first object of a cell wins."""
    h_img, w_img = img
    terms = dict.fromkeys(LOSS_NAMES, 0.0)
    for n, t in enumerate(targets):
        cells = {}
        for (x0, y0, x1, y1), label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            cx, cy = (x0 + x1) / 2 / w_img, (y0 + y1) / 2 / h_img
            i, j = int(cy * s), int(cx * s)
            if (i, j) not in cells:
                cells[(i, j)] = (cx * s - j, cy * s - i, (x1 - x0) / w_img, (y1 - y0) / h_img, label)
        for i in range(s):
            for j in range(s):
                p = pred[n, i, j].tolist()
                obj = cells.get((i, j))
                resp = None
                if obj is not None:
                    tx, ty, tw, th, label = obj
                    truth = ((tx + j) / s, (ty + i) / s, tw, th)
                    boxes = [((p[5 * b] + j) / s, (p[5 * b + 1] + i) / s, p[5 * b + 2] ** 2, p[5 * b + 3] ** 2)
                             for b in range(nb)]
                    ious = [_iou(bx, truth) for bx in boxes]
                    if max(ious) > 0:
                        resp = max(range(nb), key=lambda b: (ious[b], -b))
                    else:  # darknet's fallback when no predictor overlaps: smallest RMSE
                        resp = min(range(nb), key=lambda b: (math.dist(boxes[b], truth), b))
                    x, y, sw, sh, conf = p[5 * resp: 5 * resp + 5]
                    terms["loss_xy"] += l_coord * ((x - tx) ** 2 + (y - ty) ** 2)
                    terms["loss_wh"] += l_coord * ((sw - math.sqrt(tw)) ** 2 + (sh - math.sqrt(th)) ** 2)
                    terms["loss_obj"] += (conf - ious[resp]) ** 2
                    for c in range(nc):
                        terms["loss_class"] += (p[5 * nb + c] - (1.0 if c == label - 1 else 0.0)) ** 2
                for b in range(nb):
                    if b != resp:
                        terms["loss_noobj"] += l_noobj * p[5 * b + 4] ** 2
    return {k: v / len(targets) for k, v in terms.items()}


def loss_fn(**kw):
    return YOLOLoss(S, B, C, same_cell=kw.pop("same_cell", "first"), **kw)


def cell_pred(i=2, j=3):
    """Zero predictions except cell (i, j): predictor 0 exactly on the truth of TRUTH, predictor 1 off."""
    pred = torch.zeros(1, S, S, D)
    w = h = 200 / 448
    pred[0, i, j, 0:5] = torch.tensor([0.125, 0.34375, math.sqrt(w), math.sqrt(h), 0.8])
    pred[0, i, j, 5:10] = torch.tensor([0.6, 0.5, math.sqrt(w) * 0.7, math.sqrt(h), 0.3])
    pred[0, i, j, 10:13] = torch.tensor([0.5, 0.2, 0.1])
    return pred


TRUTH = target([[100, 50, 300, 250]], [2])  # centre (200, 150) → cell row 2, col 3; offsets (0.125, 0.34375)


# ---------------------------------------------------------------- encoding
def test_encoding_hand_table():
    enc = encode_targets([target([[100, 50, 300, 250], [0, 400, 448, 448]], [2, 3])], IMG, S, C, "first")
    assert enc["mask"].sum() == 2 and enc["mask"][0, 2, 3] and enc["mask"][0, 6, 3]
    torch.testing.assert_close(enc["box"][0, 2, 3], torch.tensor([0.125, 0.34375, 200 / 448, 200 / 448]))
    # centre (224, 424): 224 / 64 = 3.5 → column 3, offset 0.5; 424 / 64 = 6.625 → row 6
    torch.testing.assert_close(enc["box"][0, 6, 3], torch.tensor([0.5, 0.625, 1.0, 48 / 448]))
    assert enc["cls"][0, 2, 3].tolist() == [0, 1, 0] and enc["cls"][0, 6, 3].tolist() == [0, 0, 1]
    assert enc["cls"].sum() == 2 and enc["box"][~enc["mask"]].abs().sum() == 0


def test_encoding_non_square_input_and_bad_boxes():
    # 224 high × 448 wide: cells are 64 wide, 32 high; boxes outside the image are clipped,
    # zero-area boxes ignored
    enc = encode_targets([target([[64, 32, 192, 96], [-50, 0, 50, 40], [10, 10, 10, 50]], [1, 1, 2])],
                         (224, 448), S, C, "first")
    assert enc["mask"].sum() == 2
    torch.testing.assert_close(enc["box"][0, 2, 2], torch.tensor([0.0, 0.0, 128 / 448, 64 / 224]))
    torch.testing.assert_close(enc["box"][0, 0, 0], torch.tensor([25 / 64, 20 / 32, 50 / 448, 40 / 224]))
    with pytest.raises(ValueError, match="labels must be in 1..3"):
        encode_targets([target([[0, 0, 10, 10]], [4])], IMG, S, C)


# ---------------------------------------------------------------- hand-computed loss
def test_loss_hand_computed_one_object():
    out = loss_fn()(cell_pred(), [TRUTH], IMG)
    assert set(out) == set(LOSS_NAMES)
    expected = {
        "loss_xy": 0.0, "loss_wh": 0.0,        # predictor 0 is exactly the truth
        "loss_obj": (0.8 - 1.0) ** 2,          # its confidence target is its IoU = 1
        "loss_noobj": 0.5 * 0.3 ** 2,          # predictor 1 of the same cell; every other predictor is 0
        "loss_class": 0.5 ** 2 + 0.8 ** 2 + 0.1 ** 2,  # label 2 → one-hot (0, 1, 0)
    }
    for k, v in expected.items():
        assert out[k].item() == pytest.approx(v, abs=1e-6), k


def test_loss_matches_the_naive_loop_two_objects():
    torch.manual_seed(0)
    pred = torch.randn(2, S, S, D) * 0.3
    pred[..., [2, 3, 7, 8]] = pred[..., [2, 3, 7, 8]].abs() + 0.3  # boxes of a sensible size: IoUs > 0
    # cell (1, 1) holds a 4-px object and two 1-px boxes beside it: both IoUs are 0 there and
    # predictor 1 (centre 122 px) is nearer to the truth (98 px) than predictor 0 (64 px)
    pred[0, 1, 1, 0:4] = torch.tensor([0.0, 0.0, 0.05, 0.05])
    pred[0, 1, 1, 5:9] = torch.tensor([0.9, 0.9, 0.05, 0.05])
    targets = [target([[100, 50, 300, 250], [400, 400, 440, 440], [96, 96, 100, 100]], [2, 1, 3]),
               target([[10, 200, 430, 300]], [3])]
    got = loss_fn()(pred, targets, IMG)
    want = naive_loss(pred, targets)
    for k in LOSS_NAMES:
        assert got[k].item() == pytest.approx(want[k], rel=1e-5, abs=1e-6), k
    assert all(want[k] > 0 for k in LOSS_NAMES)


def test_batch_normalisation_is_per_image():
    torch.manual_seed(1)
    pred = torch.randn(2, S, S, D)
    t = [TRUTH, target([[0, 0, 100, 300]], [1])]
    both = loss_fn()(pred, t, IMG)
    a, b = loss_fn()(pred[:1], t[:1], IMG), loss_fn()(pred[1:], t[1:], IMG)
    for k in LOSS_NAMES:
        assert both[k].item() == pytest.approx((a[k].item() + b[k].item()) / 2, rel=1e-6)


# ---------------------------------------------------------------- responsible predictor
def test_responsible_is_the_highest_iou_predictor():
    pred = cell_pred()
    loss = loss_fn()
    index, iou = loss.responsible(pred[..., :10].reshape(1, S, S, B, 5)[..., :4],
                                  encode_targets([TRUTH], IMG, S, C)["box"])
    assert index[0, 2, 3] == 0 and iou[0, 2, 3, 0] == pytest.approx(1.0) and 0 < iou[0, 2, 3, 1] < 1
    # swap the two predictors: now predictor 1 is responsible, predictor 0 gets the noobj term
    swapped = pred.clone()
    swapped[0, 2, 3, 0:5], swapped[0, 2, 3, 5:10] = pred[0, 2, 3, 5:10], pred[0, 2, 3, 0:5]
    out = loss(swapped, [TRUTH], IMG)
    assert out["loss_obj"].item() == pytest.approx(0.04, abs=1e-6)
    assert out["loss_noobj"].item() == pytest.approx(0.045, abs=1e-6)
    assert out["loss_xy"].item() == pytest.approx(0.0, abs=1e-9)


def test_confidence_target_is_the_iou_of_the_responsible_box_detached():
    pred = cell_pred()
    pred[0, 2, 3, 0] = 0.125 + 0.5  # half a cell to the right: IoU = (200 - 32) / (200 + 32)
    pred.requires_grad_(True)
    out = loss_fn()(pred, [TRUTH], IMG)
    iou = (200 - 32) / (200 + 32)
    assert out["loss_obj"].item() == pytest.approx((0.8 - iou) ** 2, rel=1e-5)
    (g,) = torch.autograd.grad(out["loss_obj"], pred)
    assert g[0, 2, 3, 4].item() == pytest.approx(2 * (0.8 - iou), rel=1e-5)
    assert g[0, 2, 3, :4].abs().sum() == 0  # no gradient through the IoU target into the box


def test_all_zero_iou_falls_back_to_the_nearest_predictor():
    pred = torch.zeros(1, S, S, D)
    # the truth spans x 100..300, y 50..250 px; two 4.5-px boxes centred outside it (IoU 0):
    pred[0, 2, 3, 0:4] = torch.tensor([3.0, 3.0, 0.1, 0.1])  # centre (384, 320) px: far
    pred[0, 2, 3, 5:9] = torch.tensor([1.8, 0.5, 0.1, 0.1])  # centre (307, 160) px: just right of it
    index, iou = loss_fn().responsible(pred[..., :10].reshape(1, S, S, B, 5)[..., :4],
                                       encode_targets([TRUTH], IMG, S, C)["box"])
    assert iou[0, 2, 3].tolist() == [0.0, 0.0] and index[0, 2, 3] == 1


# ---------------------------------------------------------------- √w √h
def test_width_and_height_enter_as_square_roots():
    # truth w = h = 0.25 of the image; the network predicts sqrt_w = 0.6 (w = 0.36) and sqrt_h = 0.5
    pred = torch.zeros(1, S, S, D)
    pred[0, 3, 3, 0:5] = torch.tensor([0.5, 0.5, 0.6, 0.5, 0.0])
    t = target([[224 - 56, 224 - 56, 224 + 56, 224 + 56]], [1])  # centre mid-cell (3, 3)
    out = loss_fn()(pred, [t], IMG)
    assert out["loss_wh"].item() == pytest.approx(5 * (0.6 - 0.5) ** 2, rel=1e-5)  # not 5 * (0.36 - 0.25)²
    # the same 0.05 absolute error in w costs more on a small box than on a large one
    small, large = torch.zeros(1, S, S, D), torch.zeros(1, S, S, D)
    small[0, 3, 3, 0:4] = torch.tensor([0.5, 0.5, math.sqrt(0.1 + 0.05), math.sqrt(0.1)])
    large[0, 3, 3, 0:4] = torch.tensor([0.5, 0.5, math.sqrt(0.8 + 0.05), math.sqrt(0.8)])
    ts = target([[224 - 22.4, 224 - 22.4, 224 + 22.4, 224 + 22.4]], [1])
    tl = target([[224 - 179.2, 224 - 179.2, 224 + 179.2, 224 + 179.2]], [1])
    assert loss_fn()(small, [ts], IMG)["loss_wh"] > 5 * loss_fn()(large, [tl], IMG)["loss_wh"]


# ---------------------------------------------------------------- empty images, same cell, shapes
def test_empty_image_only_noobj():
    torch.manual_seed(0)
    pred = torch.randn(1, S, S, D, requires_grad=True)
    out = loss_fn()(pred, [target([], [])], IMG)
    conf = pred.detach()[..., [4, 9]]
    assert out["loss_noobj"].item() == pytest.approx(0.5 * (conf ** 2).sum().item(), rel=1e-6)
    for k in ("loss_xy", "loss_wh", "loss_obj", "loss_class"):
        assert out[k].item() == 0.0
    sum(out.values()).backward()
    nonzero = pred.grad[0].abs().sum(dim=(0, 1)) > 0
    assert nonzero.nonzero().flatten().tolist() == [4, 9]  # only the confidences get a gradient


def test_two_centres_in_one_cell_one_object_per_cell():
    # both centres in cell (2, 3): a class-1 box and a class-3 box
    two = target([[100, 50, 300, 250], [180, 140, 240, 180]], [1, 3])
    first = encode_targets([two], IMG, S, C, "first")
    assert first["mask"].sum() == 1 and first["cls"][0, 2, 3].tolist() == [1, 0, 0]
    torch.testing.assert_close(first["box"][0, 2, 3], torch.tensor([0.125, 0.34375, 200 / 448, 200 / 448]))
    reversed_ = encode_targets([target(two["boxes"].flip(0), two["labels"].flip(0))], IMG, S, C, "first")
    assert reversed_["cls"][0, 2, 3].tolist() == [0, 0, 1]
    # darknet's rule: a random one each time, never both
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        enc = encode_targets([two], IMG, S, C, "random")
        assert enc["mask"].sum() == 1 and enc["cls"].sum() == 1
        seen.add(tuple(enc["cls"][0, 2, 3].tolist()))
    assert seen == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}
    with pytest.raises(ValueError, match="same_cell"):
        YOLOLoss(S, B, C, same_cell="last")


def test_prediction_shape_must_match_s_b_c():
    with pytest.raises(ValueError, match=r"\(N, 7, 7, 13\)"):
        loss_fn()(torch.zeros(1, S, S, 30), [TRUTH], IMG)
    with pytest.raises(ValueError, match="targets for"):
        loss_fn()(torch.zeros(2, S, S, D), [TRUTH], IMG)
