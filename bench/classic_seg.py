"""Benchmark of the classic segmentation baselines on a VOC-layout segmentation split.

For every method of ``visiontasks.classic.CLASSIC_METHODS``: foreground/background mIoU (all
object classes merged into 1, 255 ignored), oracle mIoU over the dataset's classes (each region
labelled with its majority ground-truth class: an upper bound of the regions), oracle fg/bg mIoU,
and the mean time per image of the method itself (labelling not included).

mIoU comes from one confusion matrix over the whole split (not averaged per image), classes whose
union is empty left out (``visiontasks.evaluation.confusion_matrix`` / ``segmentation_scores``).

    python bench/classic_seg.py [--root ../shared/data/coco128-voc/VOC2007] [--split val]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from visiontasks.classic import CLASSIC_METHODS, foreground_background, gt_to_fg_bg, oracle_labels
from visiontasks.data import VOCSegmentation
from visiontasks.evaluation import confusion_matrix, segmentation_scores

REPO = Path(__file__).resolve().parents[1]


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    return confusion_matrix(pred, gt, num_classes)


def miou(conf: np.ndarray) -> float:
    return float(segmentation_scores(conf)["miou"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007")
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", nargs="+", default=list(CLASSIC_METHODS), choices=list(CLASSIC_METHODS))
    parser.add_argument("--border-cover", type=float, default=None, help="foreground rule parameter (default: auto)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"dataset folder not found: {args.root} (pass --root <VOC-layout folder>)", file=sys.stderr)
        return 2
    data = VOCSegmentation(args.root, args.split)
    n_cls = len(data.classes) + 1
    images, gts = [], []
    for i in range(len(data)):
        with Image.open(data.image_path(i)) as img:
            images.append(np.asarray(img.convert("RGB")))
        gts.append(data.get_annotation(i)["mask"].numpy())
    print(f"{args.root} split={args.split}: {len(images)} images")
    print(f"{'method':<16}{'fg/bg mIoU':>12}{'oracle mIoU':>13}{'oracle fg/bg':>14}{'ms/image':>10}")
    base = sum(confusion(np.zeros_like(gt), gt_to_fg_bg(gt), 2) for gt in gts)
    print(f"{'all background':<16}{miou(base):>12.4f}{'-':>13}{'-':>14}{'-':>10}")
    for name in args.methods:
        fn = CLASSIC_METHODS[name]
        conf_fb, conf_or, conf_orfb = np.zeros((2, 2), np.int64), np.zeros((n_cls, n_cls), np.int64), 0
        seconds = 0.0
        for rgb, gt in zip(images, gts):
            start = time.perf_counter()
            regions = fn(rgb)
            seconds += time.perf_counter() - start
            fb_gt = gt_to_fg_bg(gt)
            conf_fb = conf_fb + confusion(foreground_background(regions, args.border_cover), fb_gt, 2)
            conf_or = conf_or + confusion(oracle_labels(regions, gt), gt, n_cls)
            conf_orfb = conf_orfb + confusion(oracle_labels(regions, fb_gt), fb_gt, 2)
        print(f"{name:<16}{miou(conf_fb):>12.4f}{miou(conf_or):>13.4f}{miou(conf_orfb):>14.4f}"
              f"{1000 * seconds / len(images):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
