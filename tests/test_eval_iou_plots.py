"""Overlap helpers (pixel-inclusive VOC IoU, mask IoU) and the PR-curve plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visiontasks.evaluation import (box_iou, box_iou_voc, box_iou_voc_paired, eval_detection_voc, mask_iou,
                                    plot_pr_curves)


def test_box_iou_voc_counts_pixels_inclusively() -> None:
    a = np.array([[0, 0, 9, 9], [0, 0, 0, 0]], dtype=float)   # 10 x 10 and a single pixel
    b = np.array([[5, 0, 14, 9], [20, 20, 30, 30]], dtype=float)
    iou = box_iou_voc(a, b)
    # overlap 5 x 10 = 50 pixels; union 100 + 100 - 50
    np.testing.assert_allclose(iou, [[50 / 150, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(box_iou_voc(a[:1], a[1:]), [[1 / 100]])  # a pixel inside a 10 x 10 box
    np.testing.assert_allclose(box_iou_voc_paired(a, a), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou_voc(np.zeros((2, 3)), b)


def test_box_iou_is_torchvision_continuous() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    assert box_iou(a, b).item() == pytest.approx(50 / 150)


def test_mask_iou_by_hand() -> None:
    m = np.zeros((3, 4, 4), dtype=bool)
    m[0, :2, :2] = True          # 4 pixels
    m[1, :2, :] = True           # 8 pixels, contains mask 0
    iou = mask_iou(m, m[:2])
    np.testing.assert_allclose(iou, [[1.0, 0.5], [0.5, 1.0], [0.0, 0.0]])  # empty mask: 0


def test_plot_pr_curves_writes_a_png(tmp_path: Path) -> None:
    box = np.array([[0, 0, 9, 9]], dtype=float)
    res = eval_detection_voc([box], [np.array([1])], [np.array([0.9])], [box], [np.array([1])], num_classes=2)
    path = plot_pr_curves(res, ["cat", "dog"], tmp_path / "sub" / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["pr.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="class names"):
        plot_pr_curves(res, ["cat"], tmp_path / "x.png")
