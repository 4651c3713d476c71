"""``predict()`` on an image with no pixels: one InputError line naming the input (issue 26).

Before, ``np.zeros((0, 0, 3), np.uint8)`` ended in a ZeroDivisionError traceback from the resize.
Every input type predict accepts is covered (numpy HWC and HW, uint8 and float tensors, PIL), for
zero height, zero width and both, alone and inside a list (named by its index).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import visiontasks
from visiontasks.errors import InputError


@pytest.fixture(scope="module")
def model():
    return visiontasks.load_model("default")


def _inputs(h: int, w: int) -> list:
    return [np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8), torch.zeros(3, h, w, dtype=torch.uint8),
            torch.zeros(3, h, w), Image.new("RGB", (w, h)), Image.new("L", (w, h))]


@pytest.mark.parametrize("h, w", [(0, 0), (0, 7), (7, 0)])
def test_an_empty_image_is_one_input_error(model, h, w):
    for image in _inputs(h, w):
        with pytest.raises(InputError) as info:
            model.predict(image)
        text = str(info.value)
        assert text == f"image: empty image ({h}x{w} pixels, height x width): nothing to predict on", type(image)
        assert "\n" not in text


def test_an_empty_image_in_a_list_is_named_by_its_index(model):
    with pytest.raises(InputError, match=r"^images\[1\]: empty image \(0x0 pixels"):
        model.predict([np.zeros((5, 5, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)])


def test_the_smallest_images_still_predict(model):
    # One pixel, one row, one column: the resize scales them up; detections (maybe none) come back.
    for h, w in [(1, 1), (1, 40), (40, 1)]:
        result = model.predict(np.full((h, w, 3), 128, np.uint8))
        assert result.boxes.shape[1] == 4 and len(result.scores) == len(result.boxes)
        if len(result.boxes):  # boxes stay inside the image
            assert float(result.boxes[:, 2].max()) <= w and float(result.boxes[:, 3].max()) <= h


def test_a_segmenter_refuses_an_empty_image_too():
    from visiontasks.api import Predictor
    from visiontasks.registry import get_model

    seg = Predictor(get_model("fcn_small", num_classes=3), "segmentation", ["a", "b"])
    with pytest.raises(InputError, match="^image: empty image"):
        seg.predict(np.zeros((0, 3, 3), np.uint8))
