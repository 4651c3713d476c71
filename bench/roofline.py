"""Dense-compute ceilings and VGG16 conv throughput in fp32 and bf16, in one process.

The ceiling of each precision is the best rate of ``n×n @ n×n`` matmuls, n in ``--sizes``
(``torch.mm`` on fp32 tensors, and on bf16 tensors: oneDNN/AMX where the CPU has them). VGG16
conv1_1 … conv5_3 (``torchvision.models.vgg16().features[:-1]``, random weights, eval mode) then runs
on one image in five ways — fp32 NCHW, fp32 channels-last, bf16 autocast NCHW, bf16 autocast
channels-last, and the last with the conv weights stored in bf16 once as
``load_model(precision="bf16")`` does (autocast otherwise casts them on every call) — and its rate
(FLOPs from ``torch.utils.flop_counter``, 2 per multiply-add) is given as a share of the ceiling of
its precision. All calls (matmuls and convs) are interleaved, so that the load of other processes
on a shared machine hits them alike; the minimum time over ``--runs`` is used. Then each layer of
the channels-last body is timed alone (its minimum), fp32 and bf16: the 13 convolutions' own rate
against the ceiling, and the time of the ReLU and max-pool passes (memory-bound in eager PyTorch:
each reads and writes the whole map). Last, one 3×3 conv of VGG16's conv3 (256 ch) and conv4
(512 ch) shapes runs forward + backward in fp32 and bf16, the cost that decides bf16 training.
Figures are printed, never asserted.

    python bench/roofline.py --threads 2 --runs 5 [--sizes 2048 4096] [--height 600 --width 800]
"""
from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from visiontasks.precision import cast_dense_weights, cpu_bf16_supported


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
    """``n×n @ n×n`` in fp32 and bf16, named ``mm <n> <precision>``."""
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return {f"mm {n} fp32": lambda: torch.mm(a32, b32), f"mm {n} bf16": lambda: torch.mm(a16, b16)}


def conv_steps(height: int, width: int) -> tuple[dict[str, Callable[[], object]], float]:
    """VGG16 conv5_3 on one image, five ways, and the FLOPs of one pass."""
    body = torchvision.models.vgg16(weights=None).features[:-1].eval()
    body_cl = torchvision.models.vgg16(weights=None).features[:-1].eval().to(memory_format=torch.channels_last)
    body_cl.load_state_dict(body.state_dict())
    body_bf = cast_dense_weights(copy.deepcopy(body_cl), torch.bfloat16)  # as load_model(precision="bf16")
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
             "bf16 NCHW": run(body, x, True), "bf16 channels-last": run(body_cl, x_cl, True),
             "bf16 channels-last, bf16 weights": run(body_bf, x_cl, True)}
    return steps, float(counter.get_total_flops())


def layer_times(body: torch.nn.Module, x: torch.Tensor, runs: int, bf16: bool) -> list[tuple[str, float, float]]:
    """(layer kind, minimum seconds, FLOPs) of each layer of ``body`` on ``x``, each layer timed alone
    on its real input ``runs`` times (after one warm-up): where a pass's time goes."""
    out: list[tuple[str, float, float]] = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        inputs = [x]
        for layer in body:
            inputs.append(layer(inputs[-1]))
        for layer, inp, res in zip(body, inputs, inputs[1:]):
            best = best_times({"layer": lambda layer=layer, inp=inp: layer(inp)}, runs)["layer"]
            flops = 0.0
            if isinstance(layer, torch.nn.Conv2d):
                flops = 2.0 * layer.in_channels * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1] \
                    * res.shape[-2] * res.shape[-1]
            out.append((type(layer).__name__, best, flops))
    return out


def conv_backward_steps() -> dict[str, Callable[[], object]]:
    """Forward + backward (input and weight gradients) of one 3×3 conv, VGG16's conv3 and conv4
    shapes at 600×800, channels-last, fp32 and under bf16 autocast."""
    steps = {}
    for channels, h, w in ((256, 150, 200), (512, 75, 100)):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=torch.channels_last)
        x = torch.randn(1, channels, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
        for precision in ("fp32", "bf16"):
            def step(conv=conv, x=x, bf16=precision == "bf16") -> object:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = conv(x)
                y.float().sum().backward()
                return y
            steps[f"conv{channels} {h}x{w} fwd+bwd {precision}"] = step
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096], help="matmul sides n")
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={args.threads} runs={args.runs} (min time) native bf16={cpu_bf16_supported()} "
          f"cpu capability={torch.backends.cpu.get_cpu_capability()}")
    mm_steps: dict[str, Callable[[], object]] = {}
    for n in args.sizes:
        mm_steps.update(matmul_steps(n))
    steps, flops = conv_steps(args.height, args.width)
    best = best_times({**mm_steps, **steps}, args.runs)
    ceiling = {"fp32": 0.0, "bf16": 0.0}
    for name in mm_steps:
        _, n, precision = name.split()
        rate = 2.0 * int(n) ** 3 / best[name] / 1e9
        ceiling[precision] = max(ceiling[precision], rate)
        print(f"matmul {n}^3 {precision}: {1000 * best[name]:8.1f} ms  {rate:8.1f} GFLOP/s")
    print(f"ceilings (best matmul): fp32 {ceiling['fp32']:.1f} GFLOP/s, bf16 {ceiling['bf16']:.1f} GFLOP/s "
          f"({ceiling['bf16'] / ceiling['fp32']:.2f}x)")
    conv = {name: best[name] for name in steps}
    print(f"VGG16 conv1_1..conv5_3 on {args.height}x{args.width}: {flops / 1e9:.1f} GFLOP per pass")
    for name, t in conv.items():
        rate = flops / t / 1e9
        print(f"  {name:32s} {1000 * t:8.1f} ms  {rate:8.1f} GFLOP/s  {100 * rate / ceiling[name[:4]]:5.1f} % of the "
              f"{name[:4]} ceiling  ({conv['fp32 NCHW'] / t:.2f}x fp32 NCHW)")
    body32 = torchvision.models.vgg16(weights=None).features[:-1].eval().to(memory_format=torch.channels_last)
    body16 = cast_dense_weights(copy.deepcopy(body32), torch.bfloat16)
    x_cl = torch.rand(1, 3, args.height, args.width).contiguous(memory_format=torch.channels_last)
    for precision, body in (("fp32", body32), ("bf16", body16)):
        rows = layer_times(body, x_cl, args.runs, precision == "bf16")
        conv_t = sum(t for kind, t, _ in rows if kind == "Conv2d")
        other_t = sum(t for kind, t, _ in rows if kind != "Conv2d")
        conv_flops = sum(f for _, _, f in rows)
        rate, rest = conv_flops / conv_t / 1e9, (conv_flops - rows[0][2]) / (conv_t - rows[0][1]) / 1e9
        print(f"  {precision} channels-last, layer by layer (each layer's minimum): 13 convs {1000 * conv_t:.1f} ms, "
              f"{rate:.1f} GFLOP/s = {100 * rate / ceiling[precision]:.1f} % of the ceiling (conv1_2..conv5_3 "
              f"{100 * rest / ceiling[precision]:.1f} %; conv1_1, 3 input channels, {1000 * rows[0][1]:.1f} ms); "
              f"ReLU + max-pool passes {1000 * other_t:.1f} ms")
    backward = best_times(conv_backward_steps(), args.runs)
    print("one 3x3 conv, forward + backward (training), channels-last:")
    for name, t in backward.items():
        print(f"  {name:32s} {1000 * t:8.1f} ms")


if __name__ == "__main__":
    main()
