"""The papers' configs build, train a few iterations and evaluate on real photographs (slow job).

Each test copies a handful of coco128-voc photographs into a temporary VOC tree (so that split
files can be written) and runs the real tool with the shipped config, changing only what a CPU
needs: no ImageNet download (``pretrained_backbone=false``), 2 iterations, small batches.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import train_det  # noqa: E402
import train_seg  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks.data import VOCDetection, VOCSegmentation  # noqa: E402

pytestmark = pytest.mark.slow


def _subset(src: Path, dst: Path, splits: dict[tuple[str, str], list[str]]) -> Path:
    for folder in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (dst / folder).mkdir(parents=True, exist_ok=True)
    for (kind, split), ids in splits.items():
        (dst / "ImageSets" / kind / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            shutil.copy(src / "Annotations" / f"{i}.xml", dst / "Annotations")
            shutil.copy(src / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages")
            if kind == "Segmentation":
                shutil.copy(src / "SegmentationClass" / f"{i}.png", dst / "SegmentationClass")
    return dst


@pytest.fixture(scope="module")
def real_tree(coco128_root, tmp_path_factory) -> Path:
    det_train = [i for i in VOCDetection(coco128_root, "trainval").ids][:4]
    det_test = [i for i in VOCDetection(coco128_root, "test").ids][:6]
    seg_train = list(VOCSegmentation(coco128_root, "train").ids[:3])
    seg_val = list(VOCSegmentation(coco128_root, "val").ids[:3])
    return _subset(coco128_root, tmp_path_factory.mktemp("real"), {
        ("Main", "trainval"): det_train, ("Main", "test"): det_test,
        ("Segmentation", "train"): seg_train, ("Segmentation", "val"): seg_val})


@pytest.mark.parametrize("config", ["faster_rcnn_vgg16_voc07.yaml", "faster_rcnn_resnet50_voc07.yaml"])
def test_detection_config_trains_and_evaluates_on_real_photos(real_tree, tmp_path, config, capsys):
    rc = run_cli(train_det.main, [
        "--config", str(REPO / "configs" / "detection" / config), "--out", str(tmp_path), "--device", "cpu",
        f"data.root={real_tree}", "model.pretrained_backbone=false", "train.max_iters=2", "train.log_every=1",
        "data.num_workers=0"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metric"] == "voc07" and len(metrics["per_class"]) == 20
    assert metrics["mAP"] is None or 0.0 <= metrics["mAP"] <= 1.0


@pytest.mark.parametrize("config", ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "dilated_frontend", "dilated_context"])
def test_segmentation_config_trains_and_evaluates_on_real_photos(real_tree, tmp_path, config, capsys):
    rc = run_cli(train_seg.main, [
        "--config", str(REPO / "configs" / "segmentation" / f"{config}_vgg16_voc.yaml"), "--out", str(tmp_path),
        "--device", "cpu", f"data.root={real_tree}", "model.pretrained_backbone=false", "train.max_iters=2",
        "train.log_every=1", "train.batch_size=2", "data.crop_size=224", "data.num_workers=0"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["per_class"]) == 21 and 0.0 <= metrics["pixel_accuracy"] <= 1.0
