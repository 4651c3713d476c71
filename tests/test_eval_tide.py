"""TIDE's error breakdown (visiontasks.evaluation.tide) on constructed images, one error type each.

Every expected figure was computed by hand (fractions of 101-point AP) and equals the one tidecv
1.0.1 printed for the same boxes (``TIDE().evaluate(gt, preds, mode=TIDE.BOX)``, VOC boxes given to
it as ``[x, y, x1 - x0 + 1, y1 - y0 + 1]``, difficult objects as ignore regions; tidecv is not a
dependency: its numbers are copied here). Boxes are VOC's 0-based inclusive pixels.
"""
from __future__ import annotations

import numpy as np
import pytest

from visiontasks.evaluation.tide import MAIN_ERRORS, format_tide, tide_errors

A, B, C = (0, 0, 9, 9), (20, 0, 29, 9), (40, 0, 49, 9)  # 10 x 10 boxes; A, B class 1, C class 2
SHIFTED_B = (25, 0, 34, 9)  # overlaps B by 50 of 150 pixels: IoU 1/3
FAR = (60, 60, 69, 69)
GT = ([A, B, C], [1, 1, 2], [False, False, False])
HALF = 51 / 101  # 101-point AP at precision 1 up to recall 0.5 (points 0, 0.01, ..., 0.50)
TWO_THIRDS = (51 + 50 * 2 / 3) / 101  # TP, FP, TP with two objects: precision 1 to recall 0.5, then 2/3


def case(dets, gt=GT):
    boxes, labels, scores = zip(*dets)
    return ([np.array(boxes, float)], [np.array(labels)], [np.array(scores, float)],
            [np.array(gt[0], float)], [np.array(gt[1])], [np.array(gt[2])])


# name: (detections, ap50, the one main error's gain, false_pos, false_neg); tidecv printed the same
# (e.g. cls: ap50 75.24752475247524, Cls 24.752475247524757, FalsePos 0.0, FalseNeg 24.752475247524757)
ONE_ERROR = {
    "cls": ([(A, 1, .9), (C, 2, .95), (B, 2, .8)], (HALF + 1) / 2, 1 - (HALF + 1) / 2, 0.0, 1 - (HALF + 1) / 2),
    "loc": ([(A, 1, .9), (C, 2, .95), (SHIFTED_B, 1, .8)], (HALF + 1) / 2, 1 - (HALF + 1) / 2, 0.0,
            1 - (HALF + 1) / 2),
    "dupe": ([(A, 1, .9), (C, 2, .95), (A, 1, .8), (B, 1, .7)], (TWO_THIRDS + 1) / 2, 1 - (TWO_THIRDS + 1) / 2,
             1 - (TWO_THIRDS + 1) / 2, 0.0),
    "bkg": ([(A, 1, .9), (C, 2, .95), (FAR, 1, .8), (B, 1, .7)], (TWO_THIRDS + 1) / 2, 1 - (TWO_THIRDS + 1) / 2,
            1 - (TWO_THIRDS + 1) / 2, 0.0),
    # class 2 over B at IoU 1/3: wrong class and badly placed; it outranks C's detection (AP 0.5)
    "both": ([(A, 1, .9), (C, 2, .7), (SHIFTED_B, 2, .8), (B, 1, .6)], 0.75, 0.25, 0.25, 0.0),
    "miss": ([(A, 1, .9), (C, 2, .95)], (HALF + 1) / 2, 1 - (HALF + 1) / 2, 0.0, 1 - (HALF + 1) / 2),
}


@pytest.mark.parametrize("name", list(ONE_ERROR))
def test_each_error_type_on_an_image_with_exactly_that_error(name):
    dets, ap50, gain, false_pos, false_neg = ONE_ERROR[name]
    res = tide_errors(*case(dets))
    assert res["counts"] == {k: int(k == name) for k in MAIN_ERRORS}
    assert res["ap50"] == pytest.approx(ap50, abs=1e-12)
    assert res["main"] == pytest.approx({k: gain if k == name else 0.0 for k in MAIN_ERRORS}, abs=1e-12)
    assert res["special"] == pytest.approx({"false_pos": false_pos, "false_neg": false_neg}, abs=1e-12)


def test_hand_values_are_tidecvs():
    # the figures tidecv printed for "cls", "dupe" and "both" (percent), against the hand-computed ones above
    assert 100 * ONE_ERROR["cls"][1] == pytest.approx(75.24752475247524, abs=1e-12)
    assert 100 * ONE_ERROR["cls"][2] == pytest.approx(24.752475247524757, abs=1e-12)
    assert 100 * ONE_ERROR["dupe"][1] == pytest.approx(91.74917491749179, abs=1e-12)
    assert 100 * ONE_ERROR["dupe"][2] == pytest.approx(8.250825082508214, abs=1e-12)


def test_difficult_objects_are_ignore_regions():
    # a detection on a difficult box is left out of the AP (TIDE still files it, as bkg, and fixing it changes nothing)
    gt = ([A, B, C, FAR], [1, 1, 2, 1], [False, False, False, True])
    res = tide_errors(*case([(A, 1, .9), (C, 2, .95), (FAR, 1, .8), (B, 1, .7)], gt))
    assert res["ap50"] == 1.0 and res["counts"]["bkg"] == 1
    assert res["main"] == {k: 0.0 for k in MAIN_ERRORS} and res["special"] == {"false_pos": 0.0, "false_neg": 0.0}


def test_errors_are_tested_in_tides_order():
    # same-class IoU 1/3 with B and IoU 1 with a class-2 box D: loc is tested before cls
    gt = ([A, B, C, SHIFTED_B], [1, 1, 2, 2], [False] * 4)
    res = tide_errors(*case([(A, 1, .9), (C, 2, .95), (SHIFTED_B, 1, .8)], gt))
    assert res["counts"] == {"cls": 0, "loc": 1, "both": 0, "dupe": 0, "bkg": 0, "miss": 1}
    assert res["ap50"] == pytest.approx(HALF, abs=1e-12)  # tidecv: 50.495049504950494
    assert res["main"]["loc"] == pytest.approx((1 - HALF) / 2, abs=1e-12)  # tidecv: 24.75247524752475
    assert res["main"]["miss"] == pytest.approx((1 - HALF) / 2, abs=1e-12)  # D is missed
    assert res["special"]["false_neg"] == pytest.approx(1 - HALF, abs=1e-12)  # tidecv: 49.504950495049506


def test_one_fix_per_box_goes_to_the_highest_scored_error_of_any_type():
    # B is pointed at by a cls error (0.85, class 2 at IoU 100/110) and two loc errors (0.8, 0.75): fixing
    # loc only drops the two loc detections (no gain), fixing cls makes B found (tidecv: Cls 24.75, Loc 0.0)
    dets = [(A, 1, .9), (C, 2, .95), (SHIFTED_B, 1, .8), (SHIFTED_B, 1, .75), ((20, 0, 30, 9), 2, .85)]
    res = tide_errors(*case(dets))
    assert res["counts"] == {"cls": 1, "loc": 2, "both": 0, "dupe": 0, "bkg": 0, "miss": 0}
    assert res["main"]["loc"] == 0.0
    assert res["main"]["cls"] == pytest.approx(1 - (HALF + 1) / 2, abs=1e-12)


def test_at_most_max_dets_per_image_the_highest_scored():
    res = tide_errors(*case([(B, 1, .8), (A, 1, .9)], ([A, B, C], [1, 1, 2], [False] * 3)), max_dets=1)
    assert res["counts"]["miss"] == 2  # B's detection is dropped, C has none
    assert res["ap50"] == pytest.approx(HALF / 2, abs=1e-12)  # tidecv: 25.247524752475247


MIXED = (  # three images, tied scores, every error type, an ignore region
    [np.array([A, FAR, B, SHIFTED_B, A], float), np.array([C, (0, 0, 5, 5), (41, 1, 50, 10)], float),
     np.array([(2, 2, 11, 11), (22, 1, 31, 10)], float)],
    [np.array([1, 1, 1, 2, 2]), np.array([2, 1, 2]), np.array([1, 3])],
    [np.array([.9, .8, .8, .8, .6]), np.array([.7, .7, .5]), np.array([.8, .9])],
    [np.array([A, B, C], float), np.array([C, (0, 0, 9, 9)], float), np.array([(0, 0, 9, 9), B], float)],
    [np.array([1, 1, 2]), np.array([2, 1]), np.array([1, 3])],
    [np.array([False, False, False]), np.array([False, True]), np.array([False, False])],
)
#: What tidecv 1.0.1 printed for MIXED (percent; get_main_errors / get_special_errors, run.ap).
MIXED_TIDECV = {"ap50": 60.23102310231021, "cls": 0.0, "loc": 9.323432343234337, "both": 6.600660066006618,
                "dupe": 0.0, "bkg": 0.0, "miss": 6.435643564356461, "false_pos": 12.04620462046207,
                "false_neg": 14.851485148514875}


def test_a_mixed_case_with_ties_equals_tidecv():
    res = tide_errors(*MIXED)
    assert res["counts"] == {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 2, "miss": 1}  # tidecv's counts
    got = {"ap50": res["ap50"], **res["main"], **res["special"]}
    assert {k: 100 * v for k, v in got.items()} == pytest.approx(MIXED_TIDECV, abs=1e-9)


def test_voc_and_coco_boxes_agree():
    pb, pl, ps, gb, gl, gi = MIXED

    def xywh(boxes):  # the devkit's inclusive pixels as COCO widths
        return [np.column_stack([b[:, :2], b[:, 2:] - b[:, :2] + 1]) for b in boxes]

    assert tide_errors(pb, pl, ps, gb, gl, gi) == tide_errors(xywh(pb), pl, ps, xywh(gb), gl, gi, box_format="xywh")
    continuous = tide_errors(pb, pl, ps, gb, gl, gi, box_format="xyxy")  # no +1: smaller boxes, other overlaps
    assert continuous["counts"] == tide_errors(pb, pl, ps, gb, gl, gi)["counts"]


def test_printed_like_tide():
    text = format_tide(tide_errors(*case(ONE_ERROR["loc"][0])), name="dets")
    lines = text.splitlines()
    assert lines[:3] == ["-- dets --", "", "bbox AP @ 50: 75.25"]
    assert "  Type      Cls      Loc     Both     Dupe      Bkg     Miss  " in lines
    assert "   dAP     0.00    24.75     0.00     0.00     0.00     0.00  " in lines
    assert "   dAP       0.00      24.75  " in lines


def test_no_detections_and_bad_input():
    res = tide_errors([np.zeros((0, 4))], [np.zeros(0, int)], [np.zeros(0)], [np.array([A], float)], [np.array([1])])
    # fixing the miss leaves no class to score: tidecv divides by zero there; an empty mean is 0 here
    assert res["ap50"] == 0.0 and res["counts"]["miss"] == 1 and res["main"]["miss"] == 0.0
    with pytest.raises(ValueError, match="box_format"):
        tide_errors([], [], [], [], [], box_format="cxcywh")
    with pytest.raises(ValueError, match="differ in length"):
        tide_errors([np.zeros((1, 4))], [np.zeros(1, int)], [np.zeros(2)], [np.zeros((0, 4))], [np.zeros(0, int)])
