"""The RPN's NMS: torchvision's ``nms`` on every pre-NMS box then the cut, against ``topn_nms``.

For each photograph the model's RPN runs once per setting, test (``pre_nms_top_n`` 6,000 →
``post_nms_top_n`` 300) and training (12,000 → 2,000, set on the eval-mode RPN), and the boxes and
scores that reach NMS are recorded; then ``torchvision.ops.nms(...)[:n]`` and
``visiontasks.detection.topn_nms.topn_nms`` are timed on those same inputs, interleaved, and their
outputs compared. Models: the shipped default detector (a trained RPN: its scores rank real
objects) and the VGG16 Faster R-CNN config with random weights (near-uniform objectness), each at
its own input scale. Figures are printed, never asserted.

    python bench/topn_nms.py [--images 10] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import nms

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from conv_select import _time  # noqa: E402  (min of `runs` timed calls after one warm-up, in ms)

import visiontasks  # noqa: E402
import visiontasks.detection.rpn as rpn_module  # noqa: E402
from visiontasks.detection.topn_nms import topn_nms  # noqa: E402

JPEGS = ROOT.parent / "shared/data/coco128-voc/VOC2007/JPEGImages"
MODELS = (("default (trained, small backbone)", "default", ()),
          ("faster_rcnn_vgg16_voc07 (random weights)", str(ROOT / "configs/detection/faster_rcnn_vgg16_voc07.yaml"),
           ("model.pretrained_backbone=false",)))
SETTINGS = (("test", 6000, 300), ("train", 12000, 2000))


def _images(count: int) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted(JPEGS.glob("*.jpg"))[:count]
    if not paths:
        return [np.random.default_rng(k).integers(0, 256, (375, 500, 3), dtype=np.uint8) for k in range(count)]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _record(predictor, images, pre: int, post: int) -> list[tuple]:
    rpn = predictor.model.proposer
    saved = (rpn.pre_nms_top_n, rpn.post_nms_top_n)
    rpn.pre_nms_top_n, rpn.post_nms_top_n = (saved[0][0], pre), (saved[1][0], post)
    calls = []

    def spy(boxes, scores, thresh, n):
        calls.append((boxes.clone(), scores.clone(), thresh, n))
        return topn_nms(boxes, scores, thresh, n)

    rpn_module.topn_nms = spy
    try:
        for image in images:
            predictor.predict(image)
    finally:
        rpn_module.topn_nms = topn_nms
        rpn.pre_nms_top_n, rpn.post_nms_top_n = saved
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = _images(args.images)
    print(f"{len(images)} coco128-voc photographs, {args.threads} threads, torch {torch.__version__}; "
          "ms per image: min of --repeats, median over the images")
    print("| model | setting | boxes into NMS | kept by full NMS | nms then cut, ms | topn_nms, ms | ratio | same boxes |")
    print("|---|---|---|---|---|---|---|---|")
    for label, source, overrides in MODELS:
        predictor = visiontasks.load_model(source, overrides=overrides)
        for setting, pre, post in SETTINGS:
            rows = []
            for boxes, scores, thresh, n in _record(predictor, images, pre, post):
                full = nms(boxes, scores, thresh)
                same = torch.equal(full[:n], topn_nms(boxes, scores, thresh, n))
                t_full = _time(lambda: nms(boxes, scores, thresh)[:n], args.repeats)
                t_top = _time(lambda: topn_nms(boxes, scores, thresh, n), args.repeats)
                rows.append((len(boxes), len(full), t_full, t_top, same))
            med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
            print(f"| {label} | {setting} ({pre} → {post}) | {med(0):.0f} | {med(1):.0f} | {med(2):.1f} | "
                  f"{med(3):.1f} | {med(3) / med(2):.2f}× | {all(r[4] for r in rows)} |")


if __name__ == "__main__":
    main()
