"""The shipped default segmenter: ``load_model("default-seg")`` gives masks, the CLI draws them, and the
shipped weights still score on the embedded test split (weights/README.md, docs/BENCHMARKS.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import predict  # noqa: E402
from _common import run_cli  # noqa: E402

import visiontasks  # noqa: E402
from visiontasks.api import DEFAULT_SEG_WEIGHTS, DEFAULT_WEIGHTS  # noqa: E402
from visiontasks.data import EMBEDDED_CLASSES, VOCSegmentation, read_image  # noqa: E402
from visiontasks.evaluation.segmentation import SegmentationEvaluator  # noqa: E402

#: mIoU (fraction) of weights/default_seg.pt on the embedded test split, fp32, measured 2026-12-06 with
#: ``python tools/eval.py seg --checkpoint weights/default_seg.pt --root <embedded> --split test``
#: (docs/BENCHMARKS.md). The floor sits 5 points under it: it catches broken weights or a broken
#: predict path, not a rounding change.
MEASURED_MIOU = 0.9095
MIOU_FLOOR = MEASURED_MIOU - 0.05

pytestmark = pytest.mark.skipif(not DEFAULT_SEG_WEIGHTS.is_file(), reason="weights/default_seg.pt is absent")


@pytest.fixture(scope="module")
def segmenter() -> visiontasks.Predictor:
    return visiontasks.load_model("default-seg")


@pytest.fixture(scope="module")
def test_split(embedded_root: Path) -> VOCSegmentation:
    return VOCSegmentation(embedded_root, "val", classes=EMBEDDED_CLASSES)  # val = the test ids


def test_default_seg_is_a_segmenter_and_default_stays_the_detector(segmenter) -> None:
    assert segmenter.task == "segmentation"
    assert segmenter.classes == tuple(EMBEDDED_CLASSES)
    assert visiontasks.load_model("default").task == "detection"
    assert DEFAULT_WEIGHTS.name == "default_det.pt" and DEFAULT_SEG_WEIGHTS.name == "default_seg.pt"
    state = torch.load(DEFAULT_SEG_WEIGHTS, map_location="cpu", weights_only=True)
    assert "optimizer" not in state and set(state) >= {"model", "config", "meta"}  # stripped like default_det.pt


def test_default_seg_predicts_a_mask_of_the_image_size(segmenter, test_split) -> None:
    path = test_split.image_path(0)
    result = segmenter.predict(str(path))
    width, height = Image.open(path).size
    assert tuple(result.mask.shape) == (height, width)
    labels = set(result.mask.unique().tolist())
    assert labels <= {0, 1, 2, 3} and labels - {0}  # background and at least one shape class
    assert result.class_names == ("background", *EMBEDDED_CLASSES)
    # An odd size the network never saw (not a multiple of its stride 16): still the image's size.
    odd = read_image(path)[:, :101, :77]
    assert tuple(segmenter.predict(odd).mask.shape) == (101, 77)


@pytest.mark.slow  # 100 fp32 predictions: ~10 s of CPU, 1-2 min on the shared 2-core machine
def test_default_seg_miou_on_the_embedded_test_split(segmenter, test_split) -> None:
    evaluator = SegmentationEvaluator(len(EMBEDDED_CLASSES) + 1)
    for i in range(len(test_split)):
        target = np.asarray(Image.open(test_split.root / "SegmentationClass" / f"{test_split.ids[i]}.png"))
        evaluator.update(segmenter.predict(str(test_split.image_path(i))).mask.numpy(), target)
    confusion = evaluator.confusion.astype(np.float64)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert len(test_split) == 100
    miou = iou.mean()
    assert miou >= MIOU_FLOOR, f"mIoU {miou:.4f} under the floor {MIOU_FLOOR:.4f} (measured {MEASURED_MIOU})"


def test_predict_tool_task_seg_draws_the_masks(test_split, tmp_path, capsys) -> None:
    path = test_split.image_path(0)
    assert run_cli(predict.main, [str(path), "--task", "seg", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "classes [" in out and "background" in out
    png = tmp_path / f"{path.stem}_pred.png"
    drawn = np.asarray(Image.open(png).convert("RGB"))
    assert drawn.shape[:2] == np.asarray(Image.open(path)).shape[:2]
    assert not np.array_equal(drawn, np.asarray(Image.open(path).convert("RGB")))  # the overlay is drawn
    # --task names the task the model must have: a segmenter asked for as a detector is one line, exit 2.
    config = REPO / "configs" / "segmentation" / "default.yaml"
    argv = [str(path), "--task", "det", "--config", str(config), "--weights", str(DEFAULT_SEG_WEIGHTS),
            "--out", str(tmp_path / "refused")]
    assert run_cli(predict.main, argv) == 2
    assert "--task det but" in capsys.readouterr().err
