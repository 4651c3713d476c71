"""Segmentation scores: a hand-computed confusion matrix with ignore pixels, NaN classes, the accumulator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from visiontasks.evaluation import SegmentationEvaluator, confusion_matrix, segmentation_scores

GT = np.array([[0, 0, 1], [1, 255, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
# counted (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is skipped
CONF = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_confusion_matrix_by_hand() -> None:
    np.testing.assert_array_equal(confusion_matrix(PRED, GT, 4), CONF)
    assert confusion_matrix(PRED, GT, 4).dtype == np.int64


def test_scores_by_hand() -> None:
    s = segmentation_scores(CONF)
    # IoU: class 0 1/(2+2-1), class 1 2/(2+3-2), class 2 0/(1+0-0), class 3 absent everywhere -> NaN
    np.testing.assert_allclose(s["iou"][:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(s["iou"][3])
    assert s["miou"] == pytest.approx(1 / 3)  # class 3 left out of the mean
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)
    np.testing.assert_allclose(s["class_accuracy"][:3], [1 / 2, 1.0, 0.0])
    assert np.isnan(s["class_accuracy"][3])
    assert s["mean_class_accuracy"] == pytest.approx(1 / 2)


def test_matches_a_pixel_loop() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (2, 17, 23))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 6, gt.shape)
    expected = np.zeros((6, 6), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if g != 255:
            expected[g, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 6), expected)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(PRED, GT[:, :2], 4)
    with pytest.raises(ValueError, match=r"pred has values \[7\]"):
        confusion_matrix(np.where(PRED == 2, 7, PRED), GT, 4)
    with pytest.raises(ValueError, match="gt has values"):
        confusion_matrix(PRED, np.where(GT == 2, 9, GT), 4)


def test_empty_matrix_is_nan() -> None:
    s = segmentation_scores(np.zeros((3, 3), dtype=np.int64))
    assert np.isnan(s["miou"]) and np.isnan(s["pixel_accuracy"]) and np.isnan(s["iou"]).all()


def test_evaluator_accumulates_over_the_dataset() -> None:
    ev = SegmentationEvaluator(4)
    ev.update(torch.from_numpy(PRED), torch.from_numpy(GT))               # single (H, W) tensors
    logits = torch.nn.functional.one_hot(torch.from_numpy(PRED), 4).permute(2, 0, 1).float()
    ev.update(logits[None], torch.from_numpy(GT)[None])                   # (B, K, H, W) logits
    ev.update(np.stack([PRED, PRED]), np.stack([GT, GT]))                 # (B, H, W) arrays
    out = ev.compute()
    np.testing.assert_array_equal(out["confusion"], 4 * CONF)
    assert out["miou"] == pytest.approx(1 / 3)  # dataset-level, not a mean of per-image scores
    ev.reset()
    assert ev.compute()["confusion"].sum() == 0
