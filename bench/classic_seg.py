"""Benchmark of the classic segmentation baselines on a VOC-layout segmentation split.

For every method of ``visiontasks.classic.CLASSIC_METHODS``: foreground/background mIoU (all
object classes merged into 1, 255 ignored), oracle mIoU over the dataset's classes (each region
labelled with its majority ground-truth class: an upper bound of the regions), oracle fg/bg mIoU,
and the mean time per image of the method itself (labelling not included).

mIoU comes from one confusion matrix over the whole split (not averaged per image), classes whose
union is empty left out; it uses ``visiontasks.evaluation`` (``confusion_matrix`` /
``segmentation_scores``) when that module provides them, else the local bincount below.

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

REPO = Path(__file__).resolve().parents[1]


def _local_confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    valid = gt != 255
    idx = gt[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _local_miou(conf: np.ndarray) -> float:
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(np.where(union > 0, tp / union, np.nan)))


def _pick_evaluator():
    """The toolkit's evaluator when it exists and agrees with the local one on a probe, else local."""
    try:
        from visiontasks.evaluation import confusion_matrix, segmentation_scores  # type: ignore[attr-defined]

        def conf(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
            return np.asarray(confusion_matrix(pred, gt, num_classes))

        def score(c: np.ndarray) -> float:
            return float(segmentation_scores(c)["miou"])

        gt, pred = np.array([[0, 1, 255], [1, 1, 0]]), np.array([[0, 1, 1], [0, 1, 1]])
        if np.array_equal(conf(pred, gt, 2), _local_confusion(pred, gt, 2)) and \
                np.isclose(score(conf(pred, gt, 2)), _local_miou(_local_confusion(pred, gt, 2))):
            return conf, score, "visiontasks.evaluation"
    except Exception:  # absent or with another signature: fall back
        pass
    return _local_confusion, _local_miou, "local bincount"


confusion, miou, EVALUATOR = _pick_evaluator()


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
    print(f"{args.root} split={args.split}: {len(images)} images; mIoU by {EVALUATOR}")
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
