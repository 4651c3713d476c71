"""oneDNN vs im2col + one matmul for single convolutions, the figures behind ``visiontasks/conv_select.py``.

Each shape is timed in one process, the three ways interleaved (oneDNN on NCHW, oneDNN on
channels-last, ``gemm_conv2d``), minimum of ``--runs``; batch 1, fp32 (``--bf16`` under CPU
autocast), random weights. The shapes are YOLOv1's and Fast YOLO's small maps, VGG16's conv5 at
600 px and ResNet-50's last stage. Figures are printed, never asserted.

    python bench/conv_select.py [--runs 5] [--threads 2] [--bf16]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from visiontasks.conv_select import gemm_conv2d  # noqa: E402

#: (in channels, out channels, kernel, map side, stride, where it occurs)
SHAPES = [
    (1024, 1024, 3, 7, 1, "YOLOv1 / Fast YOLO last convs"),
    (1024, 1024, 3, 14, 2, "YOLOv1 stride-2 conv"),
    (1024, 1024, 3, 14, 1, "YOLOv1 at 14×14"),
    (512, 1024, 3, 7, 1, "Fast YOLO conv7"),
    (512, 1024, 3, 14, 1, "YOLOv1 at 14×14"),
    (1024, 512, 1, 14, 1, "YOLOv1 1×1 reduction"),
    (256, 512, 3, 14, 1, "Fast YOLO conv6"),
    (512, 512, 3, 28, 1, "VGG16 conv4 at 448 px"),
    (512, 512, 3, 37, 1, "VGG16 conv5 at 600 px"),
    (2048, 512, 1, 19, 1, "ResNet-50 layer4 1×1"),
]


def _time(fn, runs: int) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="under torch.autocast('cpu', bfloat16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = "bf16 autocast" if args.bf16 else "fp32"
    print(f"batch 1, {dtype}, {args.threads} threads, torch {torch.__version__}, minimum of {args.runs}\n")
    print("| conv | map | where | oneDNN NCHW ms | oneDNN channels-last ms | GEMM ms | faster |")
    print("|---|---|---|---|---|---|---|")
    for cin, cout, k, side, stride, where in SHAPES:
        torch.manual_seed(0)
        conv = nn.Conv2d(cin, cout, k, padding=k // 2, stride=stride).eval()
        conv_cl = nn.Conv2d(cin, cout, k, padding=k // 2, stride=stride).eval().to(memory_format=torch.channels_last)
        x = torch.randn(1, cin, side, side)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            nchw = _time(lambda: conv(x), args.runs)
            cl = _time(lambda: conv_cl(x_cl), args.runs)
            gemm = _time(lambda: gemm_conv2d(x, conv, conv.weight, conv.bias), args.runs)
        best = min(nchw, cl)
        verdict = f"GEMM {best / gemm:.1f}×" if gemm < best else f"oneDNN {gemm / best:.1f}×"
        print(f"| {cin}→{cout} {k}×{k}/{stride} | {side}×{side} | {where} | {nchw:.2f} | {cl:.2f} | {gemm:.2f} | {verdict} |",
              flush=True)


if __name__ == "__main__":
    main()
