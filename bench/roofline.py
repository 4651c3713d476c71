"""Dense-compute ceilings and VGG16 conv throughput in fp32 and bf16, in one process.

The ceiling of each precision is the best rate of an ``n×n @ n×n`` matmul (``torch.mm`` on fp32
tensors, and on bf16 tensors: oneDNN/AMX where the CPU has them). VGG16 conv1_1 … conv5_3
(``torchvision.models.vgg16().features[:-1]``, random weights, eval mode) then runs on one image
in four ways — fp32 NCHW, fp32 channels-last, bf16 autocast NCHW, bf16 autocast channels-last —
and its rate (FLOPs from ``torch.utils.flop_counter``, 2 per multiply-add) is given as a share of
the ceiling of its precision. Calls are interleaved; the minimum time over ``--runs`` is used.
Figures are printed, never asserted.

    python bench/roofline.py --threads 2 --runs 5 [--size 2048] [--height 600 --width 800]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from visiontasks.precision import cpu_bf16_supported


def best_times(steps: dict[str, Callable[[], object]], runs: int, warmup: int = 1) -> dict[str, float]:
    """Minimum seconds per call of each step, calls interleaved (a, b, a, b, …)."""
    best = {name: float("inf") for name in steps}
    for i in range(warmup + runs):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def matmul_steps(n: int) -> dict[str, Callable[[], object]]:
    """``n×n @ n×n`` in fp32 and bf16."""
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return {"fp32": lambda: torch.mm(a32, b32), "bf16": lambda: torch.mm(a16, b16)}


def conv_steps(height: int, width: int) -> tuple[dict[str, Callable[[], object]], float]:
    """VGG16 conv5_3 on one image, four ways, and the FLOPs of one pass."""
    body = torchvision.models.vgg16(weights=None).features[:-1].eval()
    body_cl = torchvision.models.vgg16(weights=None).features[:-1].eval().to(memory_format=torch.channels_last)
    body_cl.load_state_dict(body.state_dict())
    x = torch.rand(1, 3, height, width)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run(model: torch.nn.Module, inp: torch.Tensor, bf16: bool) -> Callable[[], object]:
        def step() -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(inp)
        return step

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        body(x)
    steps = {"fp32 NCHW": run(body, x, False), "fp32 channels-last": run(body_cl, x_cl, False),
             "bf16 NCHW": run(body, x, True), "bf16 channels-last": run(body_cl, x_cl, True)}
    return steps, float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=2048, help="matmul side n")
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={args.threads} runs={args.runs} (min time) native bf16={cpu_bf16_supported()} "
          f"cpu capability={torch.backends.cpu.get_cpu_capability()}")
    mm = best_times(matmul_steps(args.size), args.runs)
    mm_flops = 2.0 * args.size**3
    ceiling = {name: mm_flops / t / 1e9 for name, t in mm.items()}
    for name, rate in ceiling.items():
        print(f"matmul {args.size}^3 {name}: {1000 * mm[name]:8.1f} ms  {rate:8.1f} GFLOP/s (ceiling)")
    steps, flops = conv_steps(args.height, args.width)
    conv = best_times(steps, args.runs)
    print(f"VGG16 conv1_1..conv5_3 on {args.height}x{args.width}: {flops / 1e9:.1f} GFLOP per pass")
    for name, t in conv.items():
        rate = flops / t / 1e9
        print(f"  {name:20s} {1000 * t:8.1f} ms  {rate:8.1f} GFLOP/s  {100 * rate / ceiling[name[:4]]:5.1f} % of the "
              f"{name[:4]} ceiling  ({conv['fp32 NCHW'] / t:.2f}x fp32 NCHW)")


if __name__ == "__main__":
    main()
