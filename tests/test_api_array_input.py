"""``predict(uint8 array)``'s conversion (issue 24): one pass to a contiguous float tensor, same values.

Before issue 24 an HWC array became a permuted (strided) float view, and the model's normalisation
ran strided; now it is one contiguous tensor. These tests check the values by hand, that the
caller's array is never aliased, every array kind (read-only, negative strides, PIL, grey, uint8
tensor), and that ``predict`` gives the detections the old conversion gave, and those of the same
image read from a file.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import visiontasks
from visiontasks.api import to_tensor_image

SMALL = "configs/detection/faster_rcnn_small_voc07.yaml"


def _old_conversion(array: np.ndarray) -> torch.Tensor:
    """What ``to_tensor_image`` returned for an HWC uint8 array before issue 24 (a strided view)."""
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255.0


def test_values_by_hand_and_layout():
    # pixel (row 0, col 1) is (255, 51, 0): channel 0 → 1.0, channel 1 → 0.2, channel 2 → 0.0
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 1] = (255, 51, 0)
    array[1, 2] = (102, 0, 204)
    t = to_tensor_image(array)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32 and t.is_contiguous()
    assert t[:, 0, 1].tolist() == pytest.approx([1.0, 0.2, 0.0], abs=1e-7)
    assert t[:, 1, 2].tolist() == pytest.approx([0.4, 0.0, 0.8], abs=1e-7)
    assert float(t.sum()) == pytest.approx(1.0 + 0.2 + 0.4 + 0.8, abs=1e-6)


def test_never_aliases_the_callers_array():
    array = np.full((4, 5, 3), 10, np.uint8)
    t = to_tensor_image(array)
    array[:] = 200
    assert torch.all(t == 10 / 255.0)


@pytest.mark.parametrize("kind", ["read_only", "negative_strides", "pil", "grey", "transposed_view", "uint8_tensor"])
def test_every_array_kind_equals_the_old_conversion(kind):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    inputs = {"read_only": np.asarray(Image.fromarray(base)),  # PIL's buffer: not writable
              "negative_strides": base[::-1, ::-1],
              "pil": Image.fromarray(base),
              "grey": grey,
              "transposed_view": np.ascontiguousarray(base.transpose(1, 0, 2)).transpose(1, 0, 2),
              "uint8_tensor": torch.from_numpy(base).permute(2, 0, 1)}
    expected = {"negative_strides": base[::-1, ::-1], "grey": np.repeat(grey[:, :, None], 3, axis=2)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "non-writable NumPy array" warning
        t = to_tensor_image(inputs[kind])
    assert t.is_contiguous() and t.dtype == torch.float32
    assert torch.equal(t, _old_conversion(expected.get(kind, base)))


@pytest.fixture(scope="module")
def small_detector():
    torch.manual_seed(0)
    predictor = visiontasks.load_model(SMALL, preset="evaluate")
    predictor.score_thresh = 0.0  # keep every detection, so the comparison covers 100 boxes
    return predictor


def test_predict_gives_the_old_conversions_detections(small_detector, tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    result = small_detector.predict(array)
    with torch.inference_mode():
        before = small_detector.model([_old_conversion(array)])[0]
    assert len(result) == len(before["boxes"]) > 0
    torch.testing.assert_close(result.boxes, before["boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(result.scores, before["scores"], atol=1e-6, rtol=0)
    assert torch.equal(result.labels, before["labels"])
    path = tmp_path / "same.png"
    Image.fromarray(array).save(path)
    from_file = small_detector.predict(str(path))
    assert torch.equal(from_file.boxes, result.boxes) and torch.equal(from_file.scores, result.scores)
