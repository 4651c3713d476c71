"""Edge segmentation fills drawn shapes; fg/bg rule, ground-truth conversion, oracle labels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from visiontasks.classic import (
    CLASSIC_METHODS,
    border_values,
    edge_segment,
    foreground_background,
    gt_to_fg_bg,
    oracle_labels,
    segment_classic,
)


def _distance_from(center: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - center[1], xx - center[0])


def test_edges_fill_a_drawn_circle():
    img = np.zeros((64, 64), np.uint8)
    cv2.circle(img, (30, 33), 18, 255, thickness=1)
    labels = edge_segment(img)
    assert labels.dtype == np.int64 and labels.max() == 1
    dist = _distance_from((30, 33), img.shape)
    assert (labels[dist <= 16] == 1).all()  # the whole disc is filled...
    assert (labels[dist >= 22] == 0).all()  # ...and nothing beyond the edge band


def test_edges_keep_a_circle_inside_a_rectangle():
    img = np.zeros((80, 90), np.uint8)
    cv2.rectangle(img, (5, 5), (84, 74), 255, thickness=1)
    cv2.circle(img, (45, 40), 15, 255, thickness=1)
    labels = edge_segment(img)
    assert labels.max() == 2
    dist = _distance_from((45, 40), img.shape)
    inner, outer = labels[40, 45], labels[20, 15]
    assert {inner, outer} == {1, 2}
    assert (labels[dist <= 13] == inner).all()
    assert (labels[10:70, 10:80][dist[10:70, 10:80] >= 19] == outer).all()
    assert labels[0, 0] == 0


def test_border_values_each_pixel_once():
    regions = np.arange(12).reshape(3, 4)
    assert sorted(border_values(regions).tolist()) == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]


def test_fg_bg_binary_side_with_more_border_is_background():
    mask = np.zeros((6, 6), np.int64)
    mask[2:4, 2:4] = 1  # bright square inside: background is 0
    assert np.array_equal(foreground_background(mask), mask)
    assert np.array_equal(foreground_background(1 - mask), mask)  # inverted polarity, same answer
    tie = np.zeros((2, 2), np.int64)
    tie[:, 1] = 1  # each side holds half the border: the lower value is background
    assert foreground_background(tie).tolist() == [[0, 1], [0, 1]]


def test_fg_bg_region_map_border_regions_are_background():
    regions = np.array([
        [1, 1, 1, 1, 2],
        [1, 3, 3, 1, 2],
        [1, 3, 4, 1, 2],
        [1, 1, 1, 1, 2],
    ])
    expected = np.isin(regions, [3, 4]).astype(np.int64)
    assert np.array_equal(foreground_background(regions), expected)
    # border_cover 0.5: region 1 alone covers 10 of the 14 border pixels -> 2 becomes foreground
    assert np.array_equal(foreground_background(regions, 0.5), np.isin(regions, [2, 3, 4]).astype(np.int64))
    with pytest.raises(ValueError):
        foreground_background(regions, 0.0)


def test_gt_to_fg_bg_keeps_ignore():
    gt = np.array([[0, 1, 15], [255, 20, 0]], dtype=np.uint8)
    out = gt_to_fg_bg(gt)
    assert out.dtype == np.int64 and out.tolist() == [[0, 1, 1], [255, 1, 0]]


def test_oracle_labels_hand_made():
    regions = np.array([
        [7, 7, 7, 9],
        [7, 7, 9, 9],
        [5, 5, 9, 9],
    ])
    gt = np.array([
        [0, 3, 3, 255],
        [3, 255, 2, 2],
        [255, 255, 2, 4],
    ])
    # region 7: votes {0: 1, 3: 3} -> 3 (its 255 pixel does not vote);
    # region 9: votes {2: 3, 4: 1} -> 2; region 5: only ignore pixels -> 0.
    expected = np.array([[3, 3, 3, 2], [3, 3, 2, 2], [0, 0, 2, 2]])
    out = oracle_labels(regions, gt)
    assert out.dtype == np.int64 and np.array_equal(out, expected)
    tie = oracle_labels(np.zeros((1, 2), np.int64), np.array([[4, 1]]))
    assert tie.tolist() == [[1, 1]]  # ties go to the lower class


@pytest.mark.parametrize("method", sorted(CLASSIC_METHODS))
def test_segment_classic_every_method(method):
    rng = np.random.default_rng(0)
    rgb = np.full((48, 64, 3), 30, np.uint8)
    cv2.circle(rgb, (32, 24), 12, (220, 200, 180), thickness=-1)
    rgb = np.clip(rgb + rng.integers(-5, 6, rgb.shape), 0, 255).astype(np.uint8)
    gt = np.zeros((48, 64), np.uint8)
    cv2.circle(gt, (32, 24), 12, 7, thickness=-1)
    fg = segment_classic(method, rgb)
    assert fg.shape == (48, 64) and fg.dtype == np.int64 and set(np.unique(fg)) <= {0, 1}
    oracle = segment_classic(method, rgb, gt, oracle=True)
    assert oracle.dtype == np.int64 and set(np.unique(oracle)) <= {0, 7}
    if method != "adaptive":  # a bright disc on a dark ground is the easy case for all but local thresholds
        iou = ((fg == 1) & (gt == 7)).sum() / ((fg == 1) | (gt == 7)).sum()
        assert iou > 0.8


def test_segment_classic_bad_arguments():
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        segment_classic("watershed", rgb)
    with pytest.raises(ValueError):
        segment_classic("otsu", rgb, oracle=True)
