"""Training speed and peak memory at batch 2: our Faster R-CNN vs torchvision's ``FasterRCNN``, same model.

The two models are those of ``bench/det_latency.py`` (same backbone body and RoI head, 9 anchors,
RoIPool 7×7, 256 anchors / 128 RoIs per image, 12000 / 2000 training proposals, 600/1000 resizing).
One SGD step (lr 1e-3, momentum 0.9) per iteration on a fixed batch of two random 375×500 images
with three random boxes each. Speed: both models in one process, iterations interleaved (ours,
torchvision, ours, …), median; peak RSS: each model alone in a spawned process (build + two
iterations). ``ours_bf16`` is ours as the Trainer runs it with ``train.amp: bf16`` (bf16 autocast
around the forward, channels-last, float32 at the parts' boundaries, backward outside autocast).
Figures are printed, never asserted; on a shared machine timings are noisy.

    python bench/train_step.py --backbone small --iters 10
    python bench/train_step.py --backbone vgg16 --iters 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from det_latency import AUTOCAST, BUILDERS, interleaved_times, peak_rss_mib, run_in_child  # noqa: E402

from visiontasks.precision import autocast  # noqa: E402

#: The models compared (see ``det_latency.BUILDERS``).
MODELS = ("ours", "torchvision", "ours_bf16")


def make_batch(seed: int = 0, n: int = 2, height: int = 375, width: int = 500, boxes_per_image: int = 3,
               num_classes: int = 21) -> tuple[list[torch.Tensor], list[dict]]:
    """Random images in [0, 1] with random boxes (at least 32 px a side) and labels 1..num_classes-1."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, height, width, generator=g))
        xy = torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([width - 40.0, height - 40.0])
        wh = 32 + torch.rand(boxes_per_image, 2, generator=g) * 200
        x1y1 = torch.minimum(xy + wh, torch.tensor([float(width), float(height)]))
        targets.append({"boxes": torch.cat((xy, x1y1), 1),
                        "labels": torch.randint(1, num_classes, (boxes_per_image,), generator=g)})
    return images, targets


def _training_step(model: torch.nn.Module, images: list[torch.Tensor], targets: list[dict],
                   dtype: torch.dtype | None = None) -> Callable[[], float]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def step() -> float:
        with autocast("cpu", dtype):
            total = sum(model(images, targets).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        return total.item()
    return step


def _build_step(name: str, args: argparse.Namespace) -> Callable[[], float]:
    torch.manual_seed(0)
    return _training_step(BUILDERS[name](args.backbone).train(), *make_batch(), dtype=AUTOCAST.get(name))


def _measure_memory(name: str, args: argparse.Namespace) -> dict:
    """Peak RSS of a process that builds the model and runs two training iterations."""
    torch.set_num_threads(args.threads)
    step = _build_step(name, args)
    return {"peak_rss_mib": peak_rss_mib(), "last_loss": [step() for _ in range(2)][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="small", choices=["small", "vgg16", "resnet18", "resnet50", "alexnet"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    args = parser.parse_args()
    print(f"backbone={args.backbone} batch=2 (375x500 -> 600x800) threads={args.threads} "
          f"iters={args.iters} warmup={args.warmup}")
    memory = {name: ({} if args.no_memory else run_in_child(name, args, target=_measure_memory)) for name in MODELS}
    torch.set_num_threads(args.threads)
    times = interleaved_times({name: _build_step(name, args) for name in MODELS}, args.iters, args.warmup)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in MODELS:
        mem = memory[name]
        extra = f"  peak RSS {mem['peak_rss_mib']:7.0f} MiB  loss after 2 its {mem['last_loss']:.3f}" if mem else ""
        print(f"{name:>12s}: {1 / medians[name]:7.3f} it/s (median {1000 * medians[name]:8.1f} ms/it, "
              f"min {1000 * min(times[name]):8.1f}){extra}")
    for name in ("ours", "ours_bf16"):
        print(f"time per iteration ratio {name} / torchvision (median): {medians[name] / medians['torchvision']:.3f}")
    print(f"time per iteration ratio ours_bf16 / ours (median): {medians['ours_bf16'] / medians['ours']:.3f}")


if __name__ == "__main__":
    main()
