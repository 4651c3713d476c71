"""R-CNN's region CNN in fp32 and bf16, interleaved in one process, against the bf16 matmul ceiling.

The region CNN is what R-CNN spends its test time on: every proposal is warped to 224² (VGG16) and
run through conv1_1 … conv5_3, pool5, fc6 and fc7 (``RCNNHead.region_features``). This script
builds R-CNN VGG16 (random weights, 21 classes), prepares it as ``load_model(precision=...)`` does
(the :class:`~visiontasks.api.Predictor` constructor: channels-last, conv kernels chosen by
measurement, and in bf16 the dense weights stored in bf16), and times ``region_features`` on the
same ``--regions`` proposals of one 375×500 image under ``torch.inference_mode`` and the
precision's autocast, once per chunk size of ``--chunks`` (the regions run through the CNN at once;
``model.chunk_size``), fp32 and bf16. The FLOPs of one region come from ``torch.utils.flop_counter``
(2 per multiply-add; convolutions and fc6/fc7), the ceilings from ``n×n @ n×n`` matmuls in fp32
and bf16 (``bench/roofline.py``'s steps). All calls are interleaved (a, b, c, a, b, c, …) so that
the load of other processes hits every column alike; the minimum over ``--runs`` is used. Per-image
seconds are extrapolated to ``--boxes`` proposals (selective search's fast mode gives 1,200–2,000
per VOC image). The last line times the feature cache's call (``RCNN.extract`` with
``feature_precision``) at the best bf16 chunk. Figures are printed, never asserted.

    python bench/rcnn_fast_path.py --threads 2 --regions 32 --chunks 8 16 --runs 2
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import best_times, matmul_steps  # noqa: E402

from visiontasks.api import Predictor  # noqa: E402
from visiontasks.precision import autocast, cpu_bf16_supported  # noqa: E402
from visiontasks.registry import get_model  # noqa: E402

CLASSES = [f"c{i}" for i in range(20)]


def random_boxes(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(n, 4) xyxy boxes inside a ``height`` × ``width`` image, sides 20 px to the whole image."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, generator=g) * (width - 20)
    y0 = torch.rand(n, generator=g) * (height - 20)
    x1 = x0 + 20 + torch.rand(n, generator=g) * (width - 20 - x0)
    y1 = y0 + 20 + torch.rand(n, generator=g) * (height - 20 - y0)
    return torch.stack((x0, y0, x1, y1), dim=1)


def region_step(predictor: Predictor, images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int],
                chunk: int) -> Callable[[], object]:
    """One call of the region CNN on ``boxes`` with ``chunk`` regions at a time, as predict() runs it."""
    head = predictor.model.roi_head

    def step() -> object:
        head.pooler.chunk_size = chunk
        with torch.inference_mode(), autocast(predictor.device, predictor._dtype):
            return [fc7 for fc7, _ in head.region_features(images, [boxes], [size])]
    return step


def region_flops(model: torch.nn.Module, images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> float:
    """FLOPs of one region through the CNN and fc6/fc7 (``torch.utils.flop_counter``), counted on the
    plain model: a Predictor's ``conv_select`` would time both kernels of small maps on a first call
    (one region's conv5 is 14×14) and the counter would count those extra passes."""
    head = model.roi_head
    head.pooler.chunk_size = 1
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        list(head.region_features(images, [boxes[:1]], [size]))
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--regions", type=int, default=32, help="proposals per timed call")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 16], help="chunk sizes to compare")
    parser.add_argument("--fp32-chunks", type=int, nargs="*", default=None,
                        help="chunk sizes of the fp32 side (default: --chunks)")
    parser.add_argument("--boxes", type=int, nargs="+", default=[1200, 2000], help="proposals per image, extrapolated")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096], help="matmul sides of the ceiling")
    parser.add_argument("--backbone", default="vgg16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={args.threads} runs={args.runs} (min time) native bf16={cpu_bf16_supported()} "
          f"cpu capability={torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}")
    model = get_model("rcnn", num_classes=21, backbone=args.backbone).eval()
    height, width = 375, 500
    image = torch.rand(3, height, width)
    batch, _ = model.transform([image])
    images = batch.tensors
    boxes = random_boxes(args.regions, height, width)
    size = (height, width)
    flops = region_flops(model, images, boxes, size)  # before conv_select (one copy of the weights in memory)
    p16 = Predictor(copy.deepcopy(model), "detection", CLASSES, preset="evaluate", precision="bf16")
    p32 = Predictor(model, "detection", CLASSES, preset="evaluate", precision="fp32")
    print(f"R-CNN {args.backbone}, crop {p32.model.roi_head.pooler.crop_size}: {flops / 1e9:.2f} GFLOP per region "
          f"(flop_counter), {args.regions} regions per call")
    steps: dict[str, Callable[[], object]] = {}
    for n in args.sizes:
        steps.update(matmul_steps(n))
    for chunk in args.fp32_chunks if args.fp32_chunks is not None else args.chunks:
        steps[f"fp32 chunk {chunk}"] = region_step(p32, images, boxes, size, chunk)
    for chunk in args.chunks:
        steps[f"bf16 chunk {chunk}"] = region_step(p16, images, boxes, size, chunk)
    t0 = time.perf_counter()
    best = best_times(steps, args.runs)
    ceiling = {"fp32": 0.0, "bf16": 0.0}
    for name, t in best.items():
        if name.startswith("mm "):
            _, n, precision = name.split()
            rate = 2.0 * int(n) ** 3 / t / 1e9
            ceiling[precision] = max(ceiling[precision], rate)
            print(f"matmul {n}^3 {precision}: {1000 * t:8.1f} ms  {rate:8.1f} GFLOP/s")
    print(f"ceilings (best matmul): fp32 {ceiling['fp32']:.1f} GFLOP/s, bf16 {ceiling['bf16']:.1f} GFLOP/s")
    fp32_best = min((t for name, t in best.items() if name.startswith("fp32")), default=float("nan"))
    for name, t in best.items():
        if name.startswith("mm "):
            continue
        precision = name[:4]
        per_region = t / args.regions
        rate = flops / per_region / 1e9
        per_image = ", ".join(f"{b} boxes {b * per_region:.0f} s" for b in args.boxes)
        print(f"  {name:16s} {args.regions / t:6.2f} regions/s  {1000 * per_region:7.1f} ms/region  {rate:7.1f} "
              f"GFLOP/s = {100 * rate / ceiling[precision]:5.1f} % of the {precision} ceiling "
              f"({100 * rate / ceiling['bf16']:5.1f} % of bf16's); {fp32_best / t:.2f}x best fp32; per image: "
              f"{per_image}")
    chunk16 = min((c for c in args.chunks), key=lambda c: best[f"bf16 chunk {c}"])
    cache = p32.model  # fp32 weights, as in the features stage after fine-tuning
    cache.feature_precision = "bf16"
    cache.roi_head.pooler.chunk_size = chunk16
    t = best_times({"extract": lambda: cache.extract(image, boxes[:0], boxes)}, 1)["extract"]
    print(f"feature cache (RCNN.extract, feature_precision bf16, fp32 weights cast by autocast, chunk {chunk16}): "
          f"{args.regions / t:.2f} regions/s, {flops * args.regions / t / 1e9:.1f} GFLOP/s = "
          f"{100 * flops * args.regions / t / 1e9 / ceiling['bf16']:.1f} % of the bf16 ceiling")
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
