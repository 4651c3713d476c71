"""Selective search: boxes in original pixels after the resize, dedup, min size, top-N, determinism."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from visiontasks.data import VOCDetection, read_image
from visiontasks.detection.proposals import PROPOSAL_METHODS, proposal_params, propose, selective_search
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
    monkeypatch.setattr(ss_module, "_opencv_rects", lambda bgr, mode: np.array(rects, np.int64).reshape(-1, 4))


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


def test_min_size_in_original_pixels(monkeypatch):
    _fake_rects(monkeypatch, FAKE)
    np.testing.assert_array_equal(selective_search(UP, min_size=4), [[20, 20, 24, 24], [30, 30, 33, 33]])
    np.testing.assert_array_equal(selective_search(UP, min_size=5), [[20, 20, 24, 24]])
    assert selective_search(UP, min_size=6).shape == (0, 4)


def test_top_n_after_dedup_and_min_size(monkeypatch):
    _fake_rects(monkeypatch, FAKE)
    np.testing.assert_array_equal(selective_search(UP, min_size=0, max_proposals=3),
                                  [[20, 20, 24, 24], [5, 5, 6, 6], [30, 30, 33, 33]])
    np.testing.assert_array_equal(selective_search(UP, min_size=4, max_proposals=1), [[20, 20, 24, 24]])


def test_bad_arguments_quote_the_value():
    img = np.zeros((10, 10, 3), np.uint8)
    for kwargs, text in (({"mode": "slow"}, "'slow'"), ({"resize_width": 0}, "0"), ({"min_size": -1}, "-1"),
                         ({"max_proposals": 0}, "0")):
        with pytest.raises(ValueError, match=text):
            selective_search(img, **kwargs)
    with pytest.raises(ValueError, match=r"\(10, 10\)"):
        selective_search(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"\(1, 10, 10\)"):
        selective_search(torch.zeros(1, 10, 10))


def test_params_are_canonical_and_dispatch():
    params = proposal_params(mode="fast", min_size=0, resize_width=None)
    assert params == {"method": "selective_search", "mode": "fast", "resize_width": None, "min_size": 0,
                      "max_proposals": None}
    assert list(params) == ["method", "mode", "resize_width", "min_size", "max_proposals"]
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
