"""Detection confusion matrix: background row and column, each detection and object counted once.

Hand-built single images (VOC 0-based inclusive boxes); classes cat = 1, dog = 2; rows are the true
class, columns the predicted one, index 2 is background.
"""
from __future__ import annotations

import numpy as np
import pytest

from visiontasks.evaluation.det_confusion import detection_confusion_matrix

A, B = (0, 0, 9, 9), (20, 0, 29, 9)
FAR = (60, 60, 69, 69)
CAT, DOG, BG = 0, 1, 2


def matrix(dets, gts, difficult=None, **kw):
    boxes, labels, scores = (zip(*dets) if dets else ((), (), ()))
    gboxes, glabels = zip(*gts) if gts else ((), ())
    return detection_confusion_matrix([np.array(boxes, float).reshape(-1, 4)], [np.array(labels, int)],
                                      [np.array(scores, float)], [np.array(gboxes, float).reshape(-1, 4)],
                                      [np.array(glabels, int)], None if difficult is None else [np.array(difficult)],
                                      num_classes=2, **kw)


def cells(m):
    return {(int(r), int(c)): int(m[r, c]) for r, c in zip(*np.nonzero(m))}


def test_a_detection_of_the_wrong_class_on_an_object_is_one_confusion():
    # mmdet#10631 also counted the cat as missed (background column): background twice
    assert cells(matrix([(A, 2, .9)], [(A, 1)])) == {(CAT, DOG): 1}


def test_false_positives_go_to_the_background_row_and_misses_to_the_background_column():
    # yolov5#9414 had these swapped
    assert cells(matrix([(FAR, 2, .9)], [(A, 1)])) == {(BG, DOG): 1, (CAT, BG): 1}


def test_a_duplicate_is_one_hit_and_one_false_positive():
    assert cells(matrix([(A, 1, .9), (A, 1, .8)], [(A, 1)])) == {(CAT, CAT): 1, (BG, CAT): 1}


def test_thresholds():
    shifted = (5, 0, 14, 9)  # IoU 50 / 150 = 1/3 with A
    assert cells(matrix([(shifted, 1, .9)], [(A, 1)])) == {(BG, CAT): 1, (CAT, BG): 1}
    assert cells(matrix([(shifted, 1, .9)], [(A, 1)], iou_thresh=0.3)) == {(CAT, CAT): 1}
    assert cells(matrix([(A, 1, .4)], [(A, 1)])) == {(CAT, BG): 1}  # below the score threshold: not a detection
    assert cells(matrix([(A, 1, .4)], [(A, 1)], score_thresh=0.3)) == {(CAT, CAT): 1}


def test_one_to_one_greedy_in_score_order():
    # cat G1 (0..9) and dog G2 (4..13); the 0.9 cat X (3..12) overlaps G1 70/130 and G2 90/110: it takes G2;
    # the 0.8 dog Y (5..14) overlaps G2 90/110 (taken) and G1 only 50/150: a false positive; G1 is missed
    g1, g2, x, y = (0, 0, 9, 9), (4, 0, 13, 9), (3, 0, 12, 9), (5, 0, 14, 9)
    assert cells(matrix([(y, 2, .8), (x, 1, .9)], [(g1, 1), (g2, 2)])) == {(DOG, CAT): 1, (BG, DOG): 1, (CAT, BG): 1}
    # the higher-scored detection takes the object first, whatever the classes
    assert cells(matrix([(B, 2, .8), ((20, 0, 28, 9), 1, .9)], [(B, 2)])) == {(DOG, CAT): 1, (BG, DOG): 1}


def test_difficult_objects_are_ignored_with_their_detection():
    assert cells(matrix([(A, 1, .9), (B, 2, .9)], [(A, 1), (B, 2)], difficult=[True, False])) == {(DOG, DOG): 1}
    assert cells(matrix([], [(A, 1)], difficult=[True])) == {}


def test_each_detection_and_each_object_counted_once():
    rng = np.random.default_rng(0)
    pb, pl, ps, gb, gl = [], [], [], [], []
    for _ in range(30):
        g = rng.integers(0, 6)
        xy = rng.uniform(0, 80, (g, 2))
        gb.append(np.concatenate([xy, xy + rng.uniform(5, 30, (g, 2))], 1))
        gl.append(rng.integers(1, 4, g))
        d = rng.integers(0, 9)
        xy = rng.uniform(0, 80, (d, 2))
        pb.append(np.concatenate([xy, xy + rng.uniform(5, 30, (d, 2))], 1))
        pl.append(rng.integers(1, 4, d))
        ps.append(rng.random(d))
    m = detection_confusion_matrix(pb, pl, ps, gb, gl, num_classes=3, iou_thresh=0.3, score_thresh=0.2)
    kept = np.concatenate(ps) >= 0.2
    assert np.array_equal(m[:, :3].sum(0), np.bincount(np.concatenate(pl)[kept], minlength=4)[1:])
    assert np.array_equal(m[:3].sum(1), np.bincount(np.concatenate(gl), minlength=4)[1:])
    assert m[3, 3] == 0 and m.trace() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="labels must lie in 1..2"):
        matrix([(A, 3, .9)], [(A, 1)])
    with pytest.raises(ValueError, match="differ in length"):
        detection_confusion_matrix([np.zeros((1, 4))], [np.ones(1, int)], [np.ones(1)], [], [])
