"""One training step of a large fully connected layer: ``nn.Linear`` against ``BufferedLinear``
(``visiontasks/buffered_linear.py``), the same process.

Per layer (VGG16's fc6 25,088 → 4,096 and fc7 4,096 → 4,096, AlexNet's fc6 9,216 → 4,096, at
2 × 128 RoIs as a Faster R-CNN batch of two feeds them) and precision (float32, CPU bf16 autocast),
a step is what the Trainer runs for the layer: forward, backward of ``(y · g).sum()`` (the input
needs a gradient too, as fc6's does for conv5), the Trainer's fused SGD step and
``zero_grad(set_to_none=True)``. The two layers start from the same weights and are stepped in
turn; after a warm-up step each, the minimum and median of ``--repeats`` steps are printed with the
minor page faults per step (``getrusage``), and a check that both layers' weights stayed equal.
Figures are printed, never asserted.

    python bench/buffered_linear.py [--threads 2 --repeats 7]
"""
from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from visiontasks.buffered_linear import select_linear_kernels  # noqa: E402
from visiontasks.engine.optim import build_optimizer  # noqa: E402

#: (name, in_features, out_features)
LAYERS = (("VGG16 fc6", 25088, 4096), ("VGG16 fc7", 4096, 4096), ("AlexNet fc6", 9216, 4096))
ROWS = 256  # 2 images × 128 RoIs


def _stepper(layer: nn.Linear, amp: torch.dtype | None):
    opt = build_optimizer(layer, lr=1e-3)
    x = torch.randn(ROWS, layer.in_features, generator=torch.Generator().manual_seed(0)).requires_grad_()
    g = torch.randn(ROWS, layer.out_features, generator=torch.Generator().manual_seed(1))

    def step() -> tuple[float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        with torch.autocast("cpu", amp or torch.bfloat16, enabled=amp is not None):
            y = layer(x)
        (y.float() * g).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        x.grad = None
        return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats} rows={ROWS}")
    print("| layer | precision | nn.Linear ms (min / median) | faults | BufferedLinear ms (min / median) | faults "
          "| ratio (min) | same weights |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fan_in, fan_out in LAYERS:
        for amp in (None, torch.bfloat16):
            torch.manual_seed(0)
            plain = nn.Linear(fan_in, fan_out)
            ours = copy.deepcopy(plain)
            select_linear_kernels(ours)
            steps = {"plain": _stepper(plain, amp), "ours": _stepper(ours, amp)}
            for step in steps.values():  # warm-up
                step()
            runs: dict[str, list[tuple[float, int]]] = {"plain": [], "ours": []}
            for _ in range(args.repeats):
                for key, step in steps.items():
                    runs[key].append(step())
            cells = []
            for key in ("plain", "ours"):
                times = [t * 1e3 for t, _ in runs[key]]
                faults = statistics.median(f for _, f in runs[key])
                cells.append(f"{min(times):.0f} / {statistics.median(times):.0f} | {faults:,.0f}")
            ratio = min(t for t, _ in runs["ours"]) / min(t for t, _ in runs["plain"])
            same = torch.equal(plain.weight, ours.weight) and torch.equal(plain.bias, ours.bias)
            print(f"| {name} | {'bf16' if amp else 'fp32'} | {cells[0]} | {cells[1]} | {ratio:.2f} | {same} |",
                  flush=True)
            del steps, plain, ours


if __name__ == "__main__":
    main()
