"""R-CNN's fitted parts by hand: box-regression targets and ridge, the SVM objective, hard-negative
mining, the SVM/box-regression predictor, the feature-cache record and the predictor swap."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visiontasks import get_model
from visiontasks.detection.predictor import FastRCNNPredictor
from visiontasks.detection.rcnn import (RidgeAccumulator, SVMBoxPredictor, mine_hard_negatives, regression_targets,
                                        ridge_regression, train_linear_svm)
from visiontasks.detection.rcnn.features import image_record, read_image_features, write_image_features
from visiontasks.errors import InputError


def test_regression_targets_by_hand():
    proposals = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], dtype=np.float32)
    gt = np.array([[2, 4, 12, 24], [0, 0, 20, 10]], dtype=np.float32)
    # P: w 10, h 20, centre (5, 10). G1: same size, centre (7, 14). G2: w 20, h 10, centre (10, 5).
    want = [[0.2, 0.2, 0.0, 0.0], [0.5, -0.25, math.log(2), math.log(0.5)]]
    np.testing.assert_allclose(regression_targets(proposals, gt), want, rtol=1e-6, atol=1e-7)


def test_ridge_regularises_the_bias_like_rcnn():
    rng = np.random.default_rng(0)
    x, y, lam = rng.normal(size=(30, 5)), rng.normal(size=(30, 4)) + 3.0, 7.0
    w, b = ridge_regression(x, y, lam)
    a = np.hstack((x, np.ones((30, 1))))
    beta = np.linalg.lstsq(np.vstack((a, math.sqrt(lam) * np.eye(6))), np.vstack((y, np.zeros((6, 4)))),
                           rcond=None)[0]
    np.testing.assert_allclose(w, beta[:-1].T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b, beta[-1], rtol=1e-8, atol=1e-10)


def test_streamed_whitened_ridge_equals_lstsq_on_the_augmented_system():
    # rcnn_train_bbox_regressor.m: centre and whiten the targets, ridge on [X, 1] (bias regularised),
    # predict (A beta) T_inv + mu. The accumulator folds T_inv and mu into (W, b).
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 4)) * 0.1 + rng.normal(size=(40, 4)) * 0.05 + np.array([0.1, -0.2, 0.3, 0.0])
    lam = 2.0
    mu = y.mean(axis=0)
    yc = y - mu
    d, v = np.linalg.eigh(yc.T @ yc / len(y))
    t = v @ np.diag(1 / np.sqrt(d + 0.001)) @ v.T
    t_inv = v @ np.diag(np.sqrt(d + 0.001)) @ v.T
    a = np.hstack((x, np.ones((40, 1))))
    beta = np.linalg.lstsq(np.vstack((a, math.sqrt(lam) * np.eye(7))), np.vstack((yc @ t, np.zeros((7, 4)))),
                           rcond=None)[0]
    want = a @ beta @ t_inv + mu
    acc = RidgeAccumulator(6, buffer_rows=7)  # several blocks and a partial one
    for rows in np.array_split(np.arange(40), 5):
        acc.add(x[rows], y[rows])
    w, b = acc.solve(lam)
    assert acc.count == 40
    np.testing.assert_allclose(x @ w.T + b, want, rtol=1e-4, atol=1e-5)
    w0, b0 = RidgeAccumulator(6).solve(lam)  # no example: the identity move
    assert not w0.any() and not b0.any()


def test_svm_solver_is_rcnns_objective():
    # One positive at x = 1 and one negative at x = -1 with C = 0.001: both violate the margin, so
    # the optimum of 1/2 w^2 + 1/2 (b/B)^2 + C*pw*(1 - (w + b)) + C*(1 + (-w + b)) is
    # w = C (pw + 1), b = B^2 C (pw - 1): it pins C, the positive weight and the bias multiplier.
    for pw, bias_mult in ((2.0, 10.0), (1.0, 10.0), (2.0, 1.0)):
        w, b = train_linear_svm(np.array([[1.0]]), np.array([[-1.0]]), C=1e-3, pos_weight=pw, bias_mult=bias_mult,
                                tol=1e-9, max_iter=100000)
        assert w[0] == pytest.approx(1e-3 * (pw + 1), rel=1e-3)
        assert b == pytest.approx(bias_mult**2 * 1e-3 * (pw - 1), abs=1e-6)
    with pytest.raises(ValueError, match="positives and negatives"):
        train_linear_svm(np.ones((2, 3)), np.zeros((0, 3)))


def _toy():
    """2-D: positives near (10, 10); the first 'images' hold only far, easy negatives near (-10, -10);
    hard negatives near (6, 2) and (2, 6) — which a pos-vs-easy SVM scores positive — come later."""
    rng = np.random.default_rng(0)
    pos = rng.normal((10, 10), 0.5, size=(20, 2))
    easy = [rng.normal((-10, -10), 0.5, size=(15, 2)) for _ in range(3)]
    hard = [np.vstack((rng.normal((6, 2), 0.3, size=(4, 2)), rng.normal((2, 6), 0.3, size=(4, 2)))) for _ in range(3)]
    return pos, easy, hard


def test_hard_negative_mining_finds_the_late_hard_negatives():
    pos, easy, hard = _toy()
    fits = []

    def fit(xp, xn):
        fits.append(len(xn))
        return train_linear_svm(xp, xn, C=1.0, tol=1e-6, max_iter=100000)

    res = mine_hard_negatives(pos, [easy[0], easy[1], easy[2], *hard], fit, retrain_limit=5)
    hard_all = np.vstack(hard)
    assert (hard_all @ res.weight + res.bias < 0).all()      # the final SVM separates them
    assert (pos @ res.weight + res.bias > 0).all()
    # without mining (easy negatives only) the same solver scores the hard negatives positive
    w0, b0 = train_linear_svm(pos, np.vstack(easy), C=1.0, tol=1e-6, max_iter=100000)
    assert (hard_all @ w0 + b0 > 0).all()
    # image 0 starts the cache (15) and trains at once; the easy images 1-2 add nothing (scores < -1);
    # hard image 3 adds its 8 (> retrain_limit 5): retrain, and the easy ones (scores < -1.2) are
    # evicted; the last image (5) always retrains
    assert fits[0] == 15 and fits[1] == 23
    assert [(h["image"], h["cache"], h["evicted"]) for h in res.history[:2]] == [(0, 15, 0), (3, 23, 15)]
    assert res.history[-1]["image"] == 5 and res.retrains == len(res.history) == len(fits)
    assert res.num_neg == res.history[-1]["cache"] - res.history[-1]["evicted"]


def test_mining_retrains_after_the_last_image_and_needs_negatives():
    pos, easy, _ = _toy()
    calls = []

    def fit(xp, xn):
        calls.append(len(xn))
        return train_linear_svm(xp, xn, C=1.0)

    # one hard negative in the last image: below the retrain limit, but the last image retrains
    res = mine_hard_negatives(pos, [easy[0], np.array([[6.0, 2.0]])], fit, retrain_limit=2000)
    assert len(calls) == 2 and res.retrains == 2 and res.added == 16
    with pytest.raises(ValueError, match="no negatives"):
        mine_hard_negatives(pos, [np.zeros((0, 2))], fit)


def _svm_predictor(score_thresh=0.05):
    pred = SVMBoxPredictor(fc7_dim=2, pool5_dim=2, num_classes=3, score_thresh=score_thresh, nms_thresh=0.3)
    pred.set_svm(1, torch.tensor([1.0, 0.0]), 0.0, scale=2.0)      # class 1 margin = 2 * fc7[0]
    pred.set_svm(2, torch.tensor([0.0, 1.0]), -5.0, scale=2.0)     # class 2 margin = 2 * fc7[1] - 5
    # class 1 regressor: t_x = -2 * pool5[0] (pool5 scale 1): moves a box left by two widths
    pred.set_box_regressor(1, torch.tensor([[-2.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), torch.zeros(4), 1.0)
    return pred


def test_svm_predictor_scores_are_sigmoid_margins_and_boxes_move_before_nms():
    pred = _svm_predictor()
    fc7 = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    pool5 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    margins, deltas = pred(fc7, pool5)
    torch.testing.assert_close(margins, torch.tensor([[0.0, 2.0, -5.0], [0.0, 1.0, -5.0]]))
    torch.testing.assert_close(deltas[:, 1, 0], torch.tensor([0.0, -2.0]))
    proposals = [torch.tensor([[20.0, 0.0, 30.0, 10.0], [40.0, 0.0, 50.0, 10.0]])]
    out = pred.inference(margins, deltas, proposals, [(100, 100)])[0]
    # the 2nd box moves from x 40..50 to 20..30, onto the 1st: NMS (after the move) keeps the 1st only;
    # class 2 scores sigmoid(-5) = 0.0067 < 0.05
    torch.testing.assert_close(out["boxes"], torch.tensor([[20.0, 0.0, 30.0, 10.0]]))
    assert out["labels"].tolist() == [1]
    assert out["scores"].item() == pytest.approx(1 / (1 + math.exp(-2.0)))
    with pytest.raises(ValueError, match="fitted"):
        pred.losses()


def test_fitted_checkpoints_load_into_a_fresh_model_and_swap_the_predictor():
    kwargs = dict(num_classes=3, backbone="small", backbone_kwargs={"width": 8, "head_dim": 16}, crop_size=32,
                  context_pad=4)
    torch.manual_seed(0)
    model = get_model("rcnn", **kwargs).eval()
    sgd_state = model.state_dict()
    image = torch.rand(3, 60, 80)
    props = torch.tensor([[5.0, 5.0, 40.0, 50.0], [30.0, 10.0, 75.0, 55.0], [0.0, 0.0, 80.0, 60.0]])
    head = model.roi_head
    model.score_thresh = 0.0
    pred = head.make_svm_predictor()
    pred.set_svm(1, torch.linspace(-1, 1, 16), 0.3, 1.5)
    pred.set_svm(2, torch.linspace(1, -1, 16), -0.2, 1.5)
    pred.set_box_regressor(2, torch.full((4, head.pool5_dim), 1e-3), torch.tensor([0.1, 0.0, 0.0, 0.0]), 1.0)
    head.set_predictor(pred)
    assert model.score_thresh == 0.0  # the threshold carries over
    with torch.no_grad():
        want = model([image], proposals=[props])[0]
    assert len(want["boxes"]) > 0
    fresh = get_model("rcnn", **kwargs).eval()
    fresh.load_state_dict(model.state_dict())
    assert isinstance(fresh.roi_head.predictor, SVMBoxPredictor)
    fresh.score_thresh = 0.0
    with torch.no_grad():
        got = fresh([image], proposals=[props])[0]
    for k in ("boxes", "labels", "scores"):
        torch.testing.assert_close(got[k], want[k])
    fresh.load_state_dict(sgd_state)  # and back to the softmax of an SGD checkpoint
    assert isinstance(fresh.roi_head.predictor, FastRCNNPredictor)
    fitted = model.train()
    with pytest.raises(ValueError, match="fitted by its training stages"):
        fitted([image], [{"boxes": props[:1], "labels": torch.tensor([1]), "proposals": props}])


def test_finetuning_has_no_box_loss_and_rcnn_sampling():
    model = get_model("rcnn", num_classes=3, backbone="small", backbone_kwargs={"width": 8, "head_dim": 16},
                      crop_size=32, context_pad=4).train()
    assert model.loss_weights == {"loss_box_reg": 0.0}
    assert model.roi_head.matcher.bg_iou_lo == 0.0 and model.roi_head.matcher.fg_iou_thresh == 0.5
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2]),
              "proposals": torch.tensor([[11.0, 10.0, 40.0, 41.0], [50.0, 50.0, 70.0, 70.0]])}
    losses = model([torch.rand(3, 80, 80)], [target])
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_classifier"].item() > 0
    sum(losses.values()).backward()
    assert model.roi_head.pooler.body.body[0][0].weight.grad is not None  # the CNN body is fine-tuned


def test_feature_record_by_hand(tmp_path):
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    labels = torch.tensor([2, 1])
    props = torch.tensor([[0.0, 0.0, 10.0, 5.0], [25.0, 0.0, 35.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    rec = image_record(gt, labels, props, 3, np.ones((5, 4)), np.ones((5, 2, 3, 3)))
    assert rec["labels"].tolist() == [2, 1, 0, 0, 0]
    # proposal 0 is half of GT 0 (class 2): IoU 0.5; proposal 1 overlaps GT 1 (class 1) by 5 of 15: 1/3
    np.testing.assert_allclose(rec["overlap"], [[0, 1, 0], [1, 0, 0], [0, 0.5, 0], [1 / 3, 0, 0], [0, 0, 0]],
                               rtol=1e-6)
    np.testing.assert_allclose(rec["max_iou"], [1, 1, 0.5, 1 / 3, 0], rtol=1e-6)
    assert rec["best_gt"].tolist()[:4] == [0, 1, 0, 1]
    assert rec["fc7"].dtype == np.float16 and rec["pool5"].shape == (5, 18)
    write_image_features(tmp_path, "img", rec)
    back = read_image_features(tmp_path, "img", ("overlap", "pool5"))
    np.testing.assert_array_equal(back["overlap"], rec["overlap"])
    with pytest.raises(InputError, match="missing.npz"):
        read_image_features(tmp_path, "missing")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz: unreadable"):
        read_image_features(tmp_path, "bad")
    empty = image_record(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), props, 3, np.ones((3, 4)),
                         np.ones((3, 18)))
    assert not empty["overlap"].any() and (empty["best_gt"] == -1).all()


@pytest.mark.parametrize("config, pool5, crop", [("rcnn_alexnet_voc07", 256 * 6 * 6, 227),
                                                 ("rcnn_vgg16_voc07", 512 * 7 * 7, 224)])
def test_paper_configs_keep_the_networks_fc6(config, pool5, crop):
    from tests.conftest import REPO
    from visiontasks.config import load_config

    cfg = load_config(REPO / "configs" / "detection" / f"{config}.yaml")
    kwargs = {k: v for k, v in cfg["model"].items() if k not in ("name", "pretrained_backbone")}
    with torch.device("meta"):  # sizes only
        model = get_model("rcnn", **kwargs)
    head = model.roi_head
    assert head.pooler.crop_size == crop and head.pooler.context_pad == 16 and head.pool5_dim == pool5
    fc6 = next(m for m in head.box_head.modules() if isinstance(m, torch.nn.Linear))
    assert fc6.in_features == pool5 and head.fc7_dim == 4096  # the ImageNet fc6 fits
    assert model.proposal_params["resize_width"] == 500 and model.loss_weights == {"loss_box_reg": 0.0}
