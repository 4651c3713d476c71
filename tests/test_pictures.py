"""Readable prediction pictures: labels scaled to the image on a contrasting filled box, no
library warnings for an image without detections."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.results import (MIN_FONT_SIZE, DetectionResult, SegmentationResult, class_color, contrasting,
                                 label_style)

ROOT = Path(__file__).resolve().parents[1]


def _one_box(h: int, w: int, label: int = 1) -> DetectionResult:
    box = torch.tensor([[0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h]])
    return DetectionResult(box, torch.tensor([0.87]), torch.tensor([label]), ["circle", "square"],
                           torch.full((3, h, w), 0.5))


def _label_height(drawn: np.ndarray, h: int, w: int, color: tuple[int, int, int]) -> int:
    """Rows in the box's upper half holding a pixel of the box colour strictly inside its side edges,
    less the top edge's line: the filled label background's height."""
    style = label_style(h, w)
    x0, y0, x1 = int(0.1 * w), int(0.1 * h), int(0.9 * w)
    inner = drawn[y0: h // 2, x0 + style["width"] + 1: x1 - style["width"] - 1]
    rows = (inner == np.array(color, dtype=np.uint8)).all(axis=-1).any(axis=1)
    return int(rows.sum()) - style["width"]


def test_label_style_scales_with_the_shorter_side_and_has_a_floor():
    assert label_style(20, 30)["font_size"] in (MIN_FONT_SIZE, None)
    big = label_style(3000, 4000)
    if big["font"] is None:
        pytest.skip("no TrueType font found: labels use PIL's fixed-size bitmap font")
    assert big["font_size"] == round(0.03 * 3000) == 90
    assert label_style(4000, 3000)["font_size"] == 90  # the shorter side, either orientation
    assert big["width"] > label_style(100, 100)["width"]


@pytest.mark.parametrize("h, w", [(48, 64), (1500, 2000)])
def test_label_background_is_filled_and_its_height_follows_the_image(h: int, w: int):
    drawn = _one_box(h, w).draw()
    color = class_color(1)
    label_h = _label_height(drawn, h, w, color)
    style = label_style(h, w)
    if style["font"] is None:
        pytest.skip("no TrueType font found")
    # the background box spans the text's height: at least ~0.6 of the font size, at most ~1.6 of it
    assert 0.6 * style["font_size"] <= label_h <= 1.6 * style["font_size"], (label_h, style)
    # the text is drawn in the contrasting colour on it
    text = np.array(contrasting(color), dtype=np.uint8)
    y0, x0 = int(0.1 * h), int(0.1 * w)
    band = drawn[y0: y0 + style["width"] + label_h, x0: int(0.9 * w)]
    assert (band == text).all(axis=-1).sum() >= 5


def test_large_image_label_is_proportionally_taller_than_a_tiny_images():
    if label_style(10, 10)["font"] is None:
        pytest.skip("no TrueType font found")
    color = class_color(1)
    small = _label_height(_one_box(48, 64).draw(), 48, 64, color)
    large = _label_height(_one_box(1500, 2000).draw(), 1500, 2000, color)
    assert large >= 3 * small, (small, large)  # a 45 px font vs the 10 px floor (fixed margins aside)


def test_text_colour_contrasts_with_the_background():
    assert contrasting((0, 0, 0)) == (255, 255, 255)
    assert contrasting((255, 255, 255)) == (0, 0, 0)
    assert contrasting((128, 0, 0)) == (255, 255, 255)  # VOC class 1, dark red
    assert contrasting((192, 192, 0)) == (0, 0, 0)  # a light yellow
    assert class_color(1) != class_color(2)


def test_empty_detection_and_segmentation_draw_without_warnings():
    image = torch.rand(3, 20, 30)
    empty = DetectionResult(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), ["a"], image)
    seg = SegmentationResult(torch.zeros(20, 30, dtype=torch.int64), ["background", "a"], image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = empty.draw()
        overlay = seg.draw()
    expected = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(drawn, expected) and np.array_equal(overlay, expected)


def test_predict_cli_on_an_image_without_detections_prints_no_warning(tmp_path: Path):
    if not (ROOT / "weights" / "default_det.pt").is_file():
        pytest.skip("weights/default_det.pt is absent")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 48), (255, 255, 255)).save(blank)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), str(blank), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 detections" in proc.stdout
    assert proc.stderr == "", proc.stderr
    assert Image.open(tmp_path / "out" / "blank_pred.png").size == (64, 48)


@pytest.mark.parametrize("h, w", [(40, 50), (1200, 1600)])
def test_segmentation_legend_names_each_class_on_its_colour_scaled_to_the_image(h: int, w: int):
    mask = torch.zeros(h, w, dtype=torch.int64)
    mask[h // 2:, w // 2:] = 2
    drawn = SegmentationResult(mask, ["background", "circle", "square"], torch.zeros(3, h, w)).draw()
    color = np.array(class_color(2), dtype=np.uint8)
    # the legend box, solid in the class colour, at the top left; the overlay (alpha 0.5) is never that colour
    column = (drawn[: h // 2, 0] == color).all(axis=-1)
    style = label_style(h, w)
    if style["font"] is None:
        pytest.skip("no TrueType font found")
    assert 0.8 * style["font_size"] <= column.sum() <= 2 * style["font_size"], (column.sum(), style)
    text = np.array(contrasting(class_color(2)), dtype=np.uint8)
    assert (drawn[: int(column.sum())] == text).all(axis=-1).sum() >= 5
