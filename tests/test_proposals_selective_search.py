"""Selective search: boxes in original pixels after the resize, dedup, min size at the working scale, top-N,
determinism, and the paper's mode (its hierarchies against OpenCV's own ``process()``, its ranking)."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from visiontasks.data import VOCDetection, read_image
from visiontasks.detection.proposals import PROPOSAL_METHODS, proposal_params, propose, selective_search
from visiontasks.errors import InputError
from visiontasks.evaluation import box_iou_voc, proposal_recall

# the package exports the function under the module's name; the module itself, for monkeypatching
ss_module = importlib.import_module("visiontasks.detection.proposals.selective_search")

RECTS = [(100, 60, 339, 299, (220, 30, 30)), (500, 100, 899, 249, (30, 30, 220)), (420, 380, 619, 559, (30, 180, 30))]


def _rectangles_image() -> tuple[np.ndarray, np.ndarray]:
    """A 1000x600 flat grey image with three flat rectangles (inclusive corners) and their boxes."""
    img = np.full((600, 1000, 3), 200, np.uint8)
    for x1, y1, x2, y2, colour in RECTS:
        img[y1:y2 + 1, x1:x2 + 1] = colour
    return img, np.array([r[:4] for r in RECTS], np.float32)


def _noise_image(seed: int = 0) -> np.ndarray:
    """Smooth random blobs, 150x200: many segments, so the ranking has many boxes to order."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(15, 20, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, 10, axis=0), 10, axis=1))


def test_rectangles_found_exactly_in_original_pixels():
    img, gt = _rectangles_image()
    boxes = selective_search(img)  # 1000 px wide -> proposes at 500x300, maps back x2 (scale 2)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 3
    assert (boxes == np.round(boxes)).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 999).all() and (boxes[:, 3] <= 599).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert (box_iou_voc(boxes, gt).max(axis=0) > 0.8).all()
    # the inclusive mapping x2' = (x2 + 1) / s - 1 gives every rectangle back to the pixel
    for row in gt:
        assert (boxes == row).all(axis=1).any(), row


def test_tensor_input_equals_array_input():
    img = _noise_image()
    as_float = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    as_uint8 = torch.from_numpy(img).permute(2, 0, 1)
    ref = selective_search(img, resize_width=None)
    np.testing.assert_array_equal(selective_search(as_float, resize_width=None), ref)
    np.testing.assert_array_equal(selective_search(as_uint8, resize_width=None), ref)


def test_same_input_twice_gives_identical_ranking():
    a, b = _noise_image(0), _noise_image(1)
    first = selective_search(a, resize_width=None, min_size=0)
    selective_search(b, resize_width=None, min_size=0)  # moves OpenCV's global rand() state
    again = selective_search(a, resize_width=None, min_size=0)
    assert len(first) > 100
    np.testing.assert_array_equal(first, again)


def _fake_rects(monkeypatch, rects):
    monkeypatch.setattr(ss_module, "_opencv_rects",
                        lambda bgr, mode, seed=1: np.array(rects, np.int64).reshape(-1, 4))


def test_mapping_back_by_hand(monkeypatch):
    _fake_rects(monkeypatch, [(10, 20, 30, 40)])  # x, y, w, h at the resized size: cols 10..39, rows 20..59
    down = np.zeros((600, 1000, 3), np.uint8)  # resized to 500x300: scale 1/2
    np.testing.assert_array_equal(selective_search(down, min_size=0), [[20, 40, 79, 119]])
    up = np.zeros((150, 250, 3), np.uint8)  # resized to 500x300: scale 2
    np.testing.assert_array_equal(selective_search(up, min_size=0), [[5, 10, 19, 29]])
    same = np.zeros((300, 500, 3), np.uint8)  # already 500 wide: (x, y, x + w - 1, y + h - 1)
    np.testing.assert_array_equal(selective_search(same, min_size=0), [[10, 20, 39, 59]])


def test_one_pixel_box_upscaled_stays_one_pixel(monkeypatch):
    # scale 2: rows 10..10 cover original rows 5..5.5 -> y1 = 5, y2 = 11/2 - 1 = 4.5 -> 4 < y1: kept as 5
    _fake_rects(monkeypatch, [(10, 10, 1, 1), (70, 10, 1, 6)])
    up = np.zeros((150, 250, 3), np.uint8)
    np.testing.assert_array_equal(selective_search(up, min_size=0), [[5, 5, 5, 5], [35, 5, 35, 7]])


# Upscaled x2 (250 -> 500): (40,40,10,10) -> [20,20,24,24] (side 5); (10,10,4,4) -> [5,5,6,6] (side 2);
# (60,60,8,8) -> [30,30,33,33] (side 4); (10,10,3,3) -> x2 = 13/2 - 1 = 5.5 -> 6: a duplicate of the second.
FAKE = [(40, 40, 10, 10), (10, 10, 4, 4), (60, 60, 8, 8), (10, 10, 3, 3)]
UP = np.zeros((150, 250, 3), np.uint8)


def test_duplicates_after_mapping_keep_first_in_rank_order(monkeypatch):
    _fake_rects(monkeypatch, FAKE)
    np.testing.assert_array_equal(selective_search(UP, min_size=0),
                                  [[20, 20, 24, 24], [5, 5, 6, 6], [30, 30, 33, 33]])


def test_min_size_counts_working_pixels_upscaled(monkeypatch):
    # working sides (500 px wide) 10, 4, 8, 3; original sides 5, 2, 4 (the 3 is the 4's duplicate)
    _fake_rects(monkeypatch, FAKE)
    np.testing.assert_array_equal(selective_search(UP, min_size=4),
                                  [[20, 20, 24, 24], [5, 5, 6, 6], [30, 30, 33, 33]])
    np.testing.assert_array_equal(selective_search(UP, min_size=8), [[20, 20, 24, 24], [30, 30, 33, 33]])
    np.testing.assert_array_equal(selective_search(UP, min_size=9), [[20, 20, 24, 24]])
    assert selective_search(UP, min_size=11).shape == (0, 4)


def test_min_size_counts_working_pixels_downscaled(monkeypatch):
    # 1000 x 600 -> 500 x 300 (scale 1/2). R-CNN's 20 px rule at 500 px: a 15 px working side (30 original
    # pixels) goes, a 20 px one (40 original) stays; 19 x 40 goes on its narrow side.
    _fake_rects(monkeypatch, [(10, 20, 15, 30), (100, 100, 20, 20), (200, 50, 19, 40), (0, 0, 500, 300)])
    down = np.zeros((600, 1000, 3), np.uint8)
    np.testing.assert_array_equal(selective_search(down, min_size=20), [[200, 200, 239, 239], [0, 0, 999, 599]])
    np.testing.assert_array_equal(selective_search(down, min_size=0),
                                  [[20, 40, 49, 99], [200, 200, 239, 239], [400, 100, 437, 179], [0, 0, 999, 599]])


def test_top_n_after_dedup_and_min_size(monkeypatch):
    _fake_rects(monkeypatch, FAKE)
    np.testing.assert_array_equal(selective_search(UP, min_size=0, max_proposals=3),
                                  [[20, 20, 24, 24], [5, 5, 6, 6], [30, 30, 33, 33]])
    np.testing.assert_array_equal(selective_search(UP, min_size=4, max_proposals=1), [[20, 20, 24, 24]])


def test_bad_mode_is_one_line_naming_the_key_and_the_modes():
    img = np.zeros((10, 10, 3), np.uint8)
    for call in (lambda: selective_search(img, mode="slow"), lambda: proposal_params(mode="slow"),
                 lambda: propose(img, {"method": "selective_search", "mode": "slow"})):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == "mode: unknown selective search mode 'slow'; valid modes: fast, paper, quality"


def test_bad_arguments_quote_the_value():
    img = np.zeros((10, 10, 3), np.uint8)
    for kwargs, text in (({"resize_width": 0}, "0"), ({"min_size": -1}, "-1"),
                         ({"max_proposals": 0}, "0"), ({"seed": -3}, "-3")):
        with pytest.raises(ValueError, match=text):
            selective_search(img, **kwargs)
    with pytest.raises(ValueError, match=r"\(10, 10\)"):
        selective_search(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"\(1, 10, 10\)"):
        selective_search(torch.zeros(1, 10, 10))


def test_params_are_canonical_and_dispatch():
    params = proposal_params(mode="fast", min_size=0, resize_width=None)
    assert params == {"method": "selective_search", "mode": "fast", "resize_width": None, "min_size": 0,
                      "max_proposals": None, "seed": 1}
    assert list(params) == ["method", "mode", "resize_width", "min_size", "max_proposals", "seed"]
    assert json.loads(json.dumps(params)) == params
    assert PROPOSAL_METHODS["selective_search"] is selective_search
    img = _noise_image()
    np.testing.assert_array_equal(propose(img, params), selective_search(img, resize_width=None, min_size=0))
    with pytest.raises(ValueError, match="'edge_boxes'"):
        proposal_params(method="edge_boxes")
    with pytest.raises(ValueError, match="'edge_boxes'"):
        propose(img, {**params, "method": "edge_boxes"})
    with pytest.raises(ValueError, match="colour"):
        propose(img, {**params, "colour": "hsv"})


def test_recall_near_one_on_embedded_images(embedded_root):
    # The embedded shapes can be 9 px wide in a 160 px image: R-CNN's 20 px minimum side would drop
    # them, and at 160 px OpenCV's 100-pixel minimum segment swallows them, so propose at 320 px.
    ds = VOCDetection(embedded_root, "test", classes=["circle", "square", "triangle"])
    props, boxes, labels, difficult = [], [], [], []
    for i in range(8):
        target = ds.get_annotation(i)
        props.append(selective_search(read_image(ds.image_path(i)), resize_width=320, min_size=0))
        boxes.append(target["boxes"].numpy())
        labels.append(target["labels"].numpy())
        difficult.append(target["difficult"].numpy())
    result = proposal_recall(props, boxes, labels, difficult)
    assert result["num_gt"] >= 10
    assert result["recall_50"] >= 0.95


# --- the paper's mode -------------------------------------------------------------------------------------------

hg = importlib.import_module("visiontasks.detection.proposals.hierarchical_grouping")


def test_grouping_loop_by_hand():
    # Three vertical stripes, columns 0 | 1-2 | 3-5 of a 4 x 6 image: 4, 8 and 12 pixels of 24. With the size
    # strategy alone, s(a, b) = 1 - (size_a + size_b) / 24: s(0, 1) = 0.5 > s(1, 2) = 1/6, so 0 and 1 merge
    # first (box columns 0-2), then that 12-pixel region with stripe 2 (s = 0, the whole image).
    from cv2.ximgproc import segmentation as seg

    labels = np.zeros((4, 6), np.int32)
    labels[:, 1:3], labels[:, 3:] = 1, 2
    image = np.zeros((4, 6, 3), np.uint8)
    merged = hg.group(image, labels, seg.createSelectiveSearchSegmentationStrategySize())
    np.testing.assert_array_equal(merged, [[0, 0, 2, 3], [0, 0, 5, 3]])


def _opencv_single_hierarchy(bgr: np.ndarray, space: str, k: int, which: int) -> set[tuple[int, ...]]:
    """OpenCV's own process() with one colour space, one graph segmentation and one strategy."""
    from cv2.ximgproc import segmentation as seg

    ss = seg.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    ss.addImage(hg._convert(bgr, space))
    ss.addGraphSegmentation(seg.createGraphSegmentation(sigma=0.8, k=float(k), min_size=k))
    ss.addStrategy(hg.paper_strategies()[which])
    rects = np.asarray(ss.process()).reshape(-1, 4)
    return {(x, y, x + w - 1, y + h - 1) for x, y, w, h in rects.tolist()}


def test_paper_mode_is_the_union_of_opencvs_eight_hierarchies():
    rgb = _noise_image(3)
    singles = [_opencv_single_hierarchy(np.ascontiguousarray(rgb[:, :, ::-1]), space, k, which)
               for k in (50, 100) for space in ("hsv", "lab") for which in (0, 1)]
    boxes = selective_search(rgb, mode="paper", resize_width=None, min_size=0)
    ours = {tuple(b) for b in boxes.astype(int).tolist()}
    assert len(ours) == len(boxes)  # no duplicates
    assert ours == set().union(*singles)
    assert all(len(ours) > len(s) for s in singles)  # no hierarchy alone gives them all


def test_paper_priorities_follow_the_released_code():
    parts = hg.paper_hierarchies(np.ascontiguousarray(_noise_image(1)[:, :, ::-1]))
    assert len(parts) == 4  # k in {50, 100} x {HSV, Lab}; two strategies each
    for boxes, prio in parts:
        m = int(prio.max()) - 1  # the first strategy's merges
        n = int((prio == m + 1).sum())  # the initial segments
        assert n > 2 and len(boxes) == len(prio) == n + 2 * (n - 1)  # a connected graph: n - 1 merges each
        np.testing.assert_array_equal(prio[n:n + m], np.arange(m, 0, -1))  # first merge m ... top 1
        np.testing.assert_array_equal(prio[n + m:], np.arange(n - 1, 0, -1))
        np.testing.assert_array_equal(boxes[n + m - 1], boxes[-1])  # both tops cover every segment


def test_paper_ranking_is_priority_times_noise(monkeypatch):
    boxes = np.array([[0, 0, 9, 9], [1, 1, 5, 5], [2, 2, 8, 8], [0, 0, 3, 3], [4, 4, 9, 9]])
    prio = np.array([3.0, 2.0, 1.0, 3.0, 2.0])
    monkeypatch.setattr(hg, "paper_hierarchies", lambda *a, **k: [(boxes[:3], prio[:3]), (boxes[3:], prio[3:])])
    noise = np.random.default_rng(7).random(5)
    np.testing.assert_array_equal(hg.paper_boxes(np.zeros((4, 4, 3), np.uint8), seed=7),
                                  boxes[np.argsort(prio * noise, kind="stable")])


def test_paper_mode_deterministic_valid_and_seeded():
    img = _noise_image(2)
    first = selective_search(img, mode="paper", resize_width=None, min_size=0)
    selective_search(_noise_image(5), mode="paper", resize_width=None, min_size=0)
    np.testing.assert_array_equal(selective_search(img, mode="paper", resize_width=None, min_size=0), first)
    h, w = img.shape[:2]
    assert first.dtype == np.float32 and len(first) > 50
    assert (first[:, :2] >= 0).all() and (first[:, 2] <= w - 1).all() and (first[:, 3] <= h - 1).all()
    assert (first[:, 2:] >= first[:, :2]).all()
    other = selective_search(img, mode="paper", resize_width=None, min_size=0, seed=2)
    assert not np.array_equal(other, first)  # another ranking ...
    assert {tuple(b) for b in other.tolist()} == {tuple(b) for b in first.tolist()}  # ... of the same boxes
    small = selective_search(img, mode="paper", resize_width=None, min_size=15)
    side = np.minimum(first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]) + 1
    np.testing.assert_array_equal(small, first[side >= 15])  # the filter keeps the ranking of the rest


def test_paper_colour_spaces_are_the_released_codes_8_bit_encodings():
    """Image2ColourSpace.m: HSV is im2uint8(rgb2hsv(im)), hue 0-255 (green 1/3 -> 85, blue 2/3 -> 170,
    not OpenCV's 0-179 60 and 120); Lab is MATLAB's 8-bit encoding (white -> L 255, a = b = 128)."""
    bgr = np.array([[[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255]]], np.uint8)  # red, green, blue, white
    np.testing.assert_array_equal(hg._convert(bgr, "hsv")[0], [[0, 255, 255], [85, 255, 255], [170, 255, 255],
                                                               [0, 0, 255]])
    np.testing.assert_array_equal(hg._convert(bgr, "lab")[0, 3], [255, 128, 128])
