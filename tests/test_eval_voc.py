"""eval_detection_voc on hand-computed cases (chainercv style): every expected value is worked out by hand.

Boxes are integer pixels, so that pixel-inclusive areas are easy to count: [0, 0, 9, 9] is 10 x 10.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from visiontasks.evaluation import (VOCDetectionEvaluator, average_precision, box_iou_voc, eleven_point_thresholds,
                                    eval_detection_voc)

A = [0, 0, 9, 9]
B = [20, 20, 29, 29]
FAR = [50, 50, 59, 59]


def arr(boxes) -> np.ndarray:
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def one_class(gt, dets, scores, difficult=None, **kwargs):
    """Single image, single class."""
    return eval_detection_voc([arr(dets)], [np.ones(len(dets), int)], [np.array(scores, float)],
                              [arr(gt)], [np.ones(len(gt), int)],
                              None if difficult is None else [np.array(difficult, bool)], **kwargs)


def outcomes_case(outcomes: str):
    """One image, npos = number of 'T' + number of 'M' (missed); T = true positive, F = far false positive."""
    n_gt = outcomes.count("T") + outcomes.count("M")
    gts = [[30 * k, 0, 30 * k + 9, 9] for k in range(n_gt)]
    dets = []
    k = 0
    for ch in outcomes.replace("M", ""):
        if ch == "T":
            dets.append(gts[k])
            k += 1
        else:
            dets.append([1000, 1000, 1009, 1009])
    scores = np.linspace(1.0, 0.1, len(dets))
    return gts, dets, scores


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_perfect_detections_give_ap_one(metric: str) -> None:
    gt_boxes = [arr([A, B]), arr([A]), arr([B, FAR])]
    gt_labels = [np.array([1, 2]), np.array([2]), np.array([1, 1])]
    scores = [np.array([0.9, 0.8]), np.array([0.7]), np.array([0.6, 0.5])]
    res = eval_detection_voc(gt_boxes, gt_labels, scores, gt_boxes, gt_labels, metric=metric)
    # (the 11-point sum of eleven 1/11 is 1.0000000000000002 in float64, in the references too)
    np.testing.assert_allclose(res["ap"], [1.0, 1.0], rtol=0, atol=1e-12)
    assert res["map"] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(res["npos"], [3, 2])


def test_duplicate_is_false_positive() -> None:
    # A (0.9) TP, A again (0.8) FP, B (0.7) TP: recall .5 .5 1, precision 1 .5 2/3.
    res = one_class([A, B], [A, A, B], [0.9, 0.8, 0.7], metric="voc12")
    np.testing.assert_allclose(res["recall"][0], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(res["precision"][0], [1.0, 0.5, 2 / 3])
    # all-point: 0.5 * 1 + 0.5 * 2/3
    assert res["ap"][0] == pytest.approx(5 / 6, abs=1e-12)
    # 11-point: t = 0 .. 0.5 -> 1 (six thresholds), t = 0.6 .. 1 -> 2/3 (five)
    res07 = one_class([A, B], [A, A, B], [0.9, 0.8, 0.7], metric="voc07")
    assert res07["ap"][0] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)


def test_eleven_point_and_all_point_differ_on_worked_example() -> None:
    # T F T F F T M: npos 4, recall .25 .25 .5 .5 .5 .75, precision 1 .5 2/3 .5 .4 .5
    gts, dets, scores = outcomes_case("TFTFFTM")
    r12 = one_class(gts, dets, scores, metric="voc12")
    np.testing.assert_allclose(r12["recall"][0], [0.25, 0.25, 0.5, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(r12["precision"][0], [1, 0.5, 2 / 3, 0.5, 0.4, 0.5])
    # envelope 1 | 2/3 | 1/2 over recall steps of 0.25 each, then 0 from 0.75 to 1
    assert r12["ap"][0] == pytest.approx(0.25 * 1 + 0.25 * 2 / 3 + 0.25 * 0.5, abs=1e-12)
    # 11-point: t 0,.1,.2 -> 1; .3,.4,.5 -> 2/3; .6,.7 -> .5; .8,.9,1 -> 0
    r07 = one_class(gts, dets, scores, metric="voc07")
    assert r07["ap"][0] == pytest.approx((3 * 1 + 3 * 2 / 3 + 2 * 0.5) / 11, abs=1e-12)


def test_difficult_only_class_is_nan_and_left_out_of_the_mean() -> None:
    res = eval_detection_voc([arr([A, B])], [np.array([1, 2])], [np.array([0.9, 0.8])],
                             [arr([A, B])], [np.array([1, 2])], [np.array([False, True])], num_classes=3)
    assert res["ap"][0] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(res["ap"][1]) and np.isnan(res["ap"][2])  # difficult-only; no ground truth at all
    assert res["precision"][1] is None and res["recall"][2] is None
    assert res["map"] == res["ap"][0]
    np.testing.assert_array_equal(res["npos"], [1, 0, 0])


def test_detection_matching_a_difficult_box_is_ignored() -> None:
    # B is difficult: the detection on it (0.9) is neither TP nor FP; then A (0.8) is TP.
    res = one_class([A, B], [B, A], [0.9, 0.8], difficult=[False, True], metric="voc12")
    np.testing.assert_array_equal(res["recall"][0], [0.0, 1.0])
    np.testing.assert_array_equal(res["precision"][0], [0.0, 1.0])
    assert res["ap"][0] == 1.0  # it would be 0.5 if the detection on B counted as a FP
    assert res["npos"][0] == 1


def test_detections_on_an_image_without_ground_truth_are_false_positives() -> None:
    res = eval_detection_voc([arr([FAR]), arr([A])], [np.array([1]), np.array([1])], [np.array([0.9]), np.array([0.5])],
                             [arr([]), arr([A])], [np.array([], int), np.array([1])], metric="voc12")
    np.testing.assert_allclose(res["precision"][0], [0.0, 0.5])
    assert res["ap"][0] == pytest.approx(0.5)


def test_class_with_ground_truth_but_no_detection_has_ap_zero() -> None:
    for metric in ("voc07", "voc12"):
        res = eval_detection_voc([arr([])], [np.array([], int)], [np.array([])], [arr([A])], [np.array([1])],
                                 metric=metric)
        assert res["ap"][0] == 0.0 and res["recall"][0].size == 0


@pytest.mark.parametrize("tps, npos, devkit, voc_eval", [
    (3, 5, 7, 6),    # recall 0.6: the devkit's 0.6 threshold counts, numpy's 0.6000000000000001 does not
    (7, 10, 8, 7),   # recall 0.7: likewise
    (3, 10, 3, 3),   # recall 0.3: both thresholds are 0.30000000000000004, neither counts
])
def test_eleven_point_thresholds_at_exact_recalls(tps: int, npos: int, devkit: int, voc_eval: int) -> None:
    gts, dets, scores = outcomes_case("T" * tps + "M" * (npos - tps))
    for reference, counted in (("devkit", devkit), ("voc_eval", voc_eval)):
        res = one_class(gts, dets, scores, metric="voc07", reference=reference)
        assert res["recall"][0][-1] == tps / npos
        assert res["ap"][0] == pytest.approx(counted / 11, abs=1e-15), reference


def test_eleven_point_threshold_values() -> None:
    devkit = eleven_point_thresholds("devkit")
    numpy = eleven_point_thresholds("voc_eval")
    assert devkit[6] == 0.6 and devkit[7] == 0.7 and devkit[3] == numpy[3] == 0.30000000000000004
    assert numpy[6] == 0.6000000000000001 and numpy[7] == 0.7000000000000001
    assert average_precision(np.array([0.6]), np.array([1.0]), "voc07", "devkit") == pytest.approx(7 / 11)


def test_overlap_of_exactly_half_counts_in_devkit_only() -> None:
    half = [0, 0, 9, 4]  # 10 x 5 = 50 pixels, all inside A (100 pixels): IoU 50 / 100
    assert box_iou_voc(arr([half]), arr([A]))[0, 0] == 0.5
    assert one_class([A], [half], [0.9], reference="devkit")["ap"][0] == pytest.approx(1.0, abs=1e-12)
    assert one_class([A], [half], [0.9], reference="voc_eval")["ap"][0] == 0.0


def test_best_match_taken_is_fp_even_if_another_box_overlaps() -> None:
    # Two GT side by side; the second detection overlaps A best (taken) and B enough: still a FP (devkit).
    a, b = [0, 0, 9, 9], [6, 0, 15, 9]
    det2 = [1, 0, 10, 9]  # IoU with A 9*10/(110) = .82, with B 5*10/150 = .33
    res = one_class([a, b], [a, det2], [0.9, 0.8], metric="voc12")
    np.testing.assert_allclose(res["precision"][0], [1.0, 0.5])


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="metric"):
        one_class([A], [A], [1.0], metric="voc10")
    with pytest.raises(ValueError, match="labels must lie in 1..1"):
        eval_detection_voc([arr([A])], [np.array([2])], [np.array([1.0])], [arr([A])], [np.array([1])], num_classes=1)
    with pytest.raises(ValueError, match="pred_scores"):
        eval_detection_voc([arr([A])], [np.array([1])], [np.array([1.0, 2.0])], [arr([A])], [np.array([1])])
    with pytest.raises(ValueError, match="images"):
        eval_detection_voc([arr([A])], [np.array([1])], [np.array([1.0])], [], [])


def test_accumulator_matches_the_function_and_takes_tensors() -> None:
    ev = VOCDetectionEvaluator(num_classes=2, metric="voc12")
    preds = [{"boxes": torch.tensor([A, B], dtype=torch.float32), "labels": torch.tensor([1, 2]),
              "scores": torch.tensor([0.9, 0.3])},
             {"boxes": torch.tensor([A]), "labels": torch.tensor([1]), "scores": torch.tensor([0.8])}]
    tgts = [{"boxes": torch.tensor([A, B], dtype=torch.float32), "labels": torch.tensor([1, 2]),
             "difficult": torch.tensor([False, False])},
            {"boxes": torch.tensor([B], dtype=torch.float32), "labels": torch.tensor([1])}]  # no 'difficult'
    ev.update(preds[:1], tgts[:1])
    ev.update(preds[1:], tgts[1:])
    res = ev.compute()
    # class 1: A (0.9) TP, A in image 2 (0.8) FP, GT B of image 2 missed: precision 1 .5, recall .5 .5
    np.testing.assert_allclose(res["ap"], [0.5, 1.0])
    assert len(ev) == 2
    ev.reset()
    assert len(ev) == 0
