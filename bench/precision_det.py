"""The default detector in fp32 and bf16 on the embedded test split: agreement, mAP and time.

``load_model("default", preset="evaluate", precision=p)`` for p in fp32 and bf16, every test
image through both (interleaved, one process), then: the VOC07 mAP of each precision with the
toolkit's evaluator, the agreement of bf16 with fp32 (for every fp32 detection scoring at least
``--score``: the best IoU with a same-label bf16 detection and the score difference to it), and
the inference time of each. Figures are printed, never asserted.

    python bench/precision_det.py --threads 2 [--source default] [--score 0.5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torchvision.ops import box_iou

from visiontasks import load_model
from visiontasks.data.factory import build_dataset
from visiontasks.evaluation.accumulators import VOCDetectionEvaluator
from visiontasks.precision import autocast


def agreement(ref: dict, other: dict, min_score: float) -> tuple[list[float], list[float]]:
    """Best same-label IoU and score difference in ``other`` of each ``ref`` detection scoring >= ``min_score``."""
    ious, diffs = [], []
    for box, label, score in zip(ref["boxes"], ref["labels"], ref["scores"]):
        if score < min_score:
            continue
        same = other["labels"] == label
        if not same.any():
            ious.append(0.0), diffs.append(float(score))
            continue
        iou = box_iou(box[None], other["boxes"][same])[0]
        j = int(iou.argmax())
        ious.append(float(iou[j])), diffs.append(abs(float(score - other["scores"][same][j])))
    return ious, diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="default", help="what load_model reads (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score", type=float, default=0.5, help="fp32 detections compared from this score")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictors = {p: load_model(args.source, preset="evaluate", precision=p) for p in ("fp32", "bf16")}
    cfg = predictors["fp32"].config
    dataset = build_dataset(cfg["data"], cfg["data"]["test_split"], train=False)
    evaluators = {p: VOCDetectionEvaluator(len(dataset.classes), metric="voc07") for p in predictors}
    seconds = {p: 0.0 for p in predictors}
    ious, diffs = [], []
    for i in range(len(dataset)):
        image, target = dataset[i]
        outputs = {}
        for name, predictor in predictors.items():
            t0 = time.perf_counter()
            with torch.inference_mode(), autocast(predictor.device, predictor._dtype):
                outputs[name] = predictor.model([image])[0]
            seconds[name] += time.perf_counter() - t0
            evaluators[name].update([outputs[name]], [target])
        a, b = agreement(outputs["fp32"], outputs["bf16"], args.score)
        ious += a
        diffs += b
    print(f"source={args.source} images={len(dataset)} threads={args.threads} "
          f"bf16 native={predictors['bf16']._dtype is not None}")
    for name in predictors:
        res = evaluators[name].compute()
        print(f"{name}: VOC07 mAP {100 * float(res['map']):.2f}  per class "
              + ", ".join(f"{c} {100 * float(ap):.2f}" for c, ap in zip(dataset.classes, res["ap"]))
              + f"  inference {seconds[name]:.1f} s ({1000 * seconds[name] / len(dataset):.1f} ms/image)")
    iou, diff = np.array(ious), np.array(diffs)
    print(f"agreement over {len(iou)} fp32 detections scoring >= {args.score}: same-label IoU with bf16 "
          f"min {iou.min():.4f} median {np.median(iou):.4f} mean {iou.mean():.4f}, share >= 0.9 "
          f"{(iou >= 0.9).mean():.3f}; |score difference| max {diff.max():.4f} mean {diff.mean():.5f}")
    print(f"time ratio bf16 / fp32: {seconds['bf16'] / seconds['fp32']:.3f}")


if __name__ == "__main__":
    main()
