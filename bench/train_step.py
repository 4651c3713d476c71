"""Training speed and peak memory at batch 2: our Faster R-CNN vs torchvision's ``FasterRCNN``, same model,
same precision on both sides (issue 24).

The two models are those of ``bench/det_latency.py`` (same backbone body, 9 anchors, RoIPool 7×7,
256 anchors / 128 RoIs per image, 12000 / 2000 training proposals, 600/1000 resizing), except that
torchvision's box head is passed explicitly as its own ``TwoMLPHead`` of our head's width (VGG16:
fc6/fc7 4,096 wide, 25,088 → 4,096 → 4,096; ours has the paper's dropout after each, torchvision's
none). One SGD step per iteration on a fixed batch of two random 375×500 images (resized to 600×800)
with three random boxes each, each side with its own training recipe's optimizer: ours the Trainer's
(``engine.optim.build_optimizer`` at its defaults: momentum 0.9, weight decay 5e-4, the Caffe bias
groups, PyTorch's fused update on the CPU), torchvision's as its ``references/detection/train.py``
builds it (``torch.optim.SGD`` over the trainable parameters, momentum 0.9, weight decay 1e-4: the
per-parameter loop on the CPU); lr 1e-3 for both. ``--same-optimizer`` gives ours torchvision's
optimizer too (the networks alone). Four models, each precision on both sides:

- ``ours_fp32`` / ``tv_fp32``: plain fp32 (as ``train.amp: none`` runs ours: VGG16's 3×3
  convolutions by NNPACK's Winograd kernel, ``visiontasks/winograd_conv.py``; ``--ours-direct`` adds
  ``ours_fp32_direct``, ours with PyTorch's own convolutions like torchvision's).
- ``ours_bf16``: as the Trainer runs ``train.amp: bf16``: fp32 weights, bf16 autocast around the
  forward, the parts' outputs cast back to fp32 (``fp32_boundaries``), channels-last; backward and
  the SGD step outside autocast.
- Both of ours as the Trainer prepares them on the CPU: the 2×2 max pools of the frozen layers
  without indices (``visiontasks/max_pool.py``), fc6/fc7 with kept cast and gradient buffers
  (``visiontasks/buffered_linear.py``; ``--plain-linear`` adds ``ours_fp32_plain_linear`` and
  ``ours_bf16_plain_linear``, ours with them as plain ``nn.Linear``), and in bf16 the frozen conv1
  block in pieces (``visiontasks/banded_stem.py``).
- ``tv_bf16``: torchvision's model under the same ``torch.autocast("cpu", torch.bfloat16)`` around
  its forward (fp32 weights, its own memory format). ``--tv-channels-last`` adds ``tv_bf16_cl``,
  torchvision's model moved to channels-last as well.

Speed: all models in one process, iterations interleaved (ours_fp32, tv_fp32, ours_bf16, tv_bf16,
…), ``--warmup`` untimed rounds, then the median of ``--iters``; peak RSS: each model alone in a
spawned process (build + two iterations). ``--profile NAME`` prints ``torch.profiler``'s top
operators of one more step of that model. Figures are printed, never asserted; on a shared machine
timings are noisy.

    python bench/train_step.py --backbone vgg16 --iters 3 --warmup 1 --no-memory
    python bench/train_step.py --backbone small --iters 10 --profile ours_bf16
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

sys.path.insert(0, str(Path(__file__).resolve().parent))
from det_latency import (TVRoIPool, build_ours, build_torchvision, interleaved_times, peak_rss_mib,  # noqa: E402
                         run_in_child)

from visiontasks import get_model, winograd_conv  # noqa: E402
from visiontasks.banded_stem import select_banded_stems  # noqa: E402
from visiontasks.buffered_linear import BufferedLinear, select_linear_kernels  # noqa: E402
from visiontasks.conv_select import select_conv_kernels  # noqa: E402
from visiontasks.engine.optim import build_optimizer  # noqa: E402
from visiontasks.max_pool import select_pool_kernels  # noqa: E402
from visiontasks.precision import autocast, fp32_boundaries, prefers_channels_last  # noqa: E402


class TVRoIPoolAutocast(TVRoIPool):
    """``TVRoIPool`` that runs ``roi_pool`` in float32 under autocast, as torchvision's own autocast
    wrapper of ``roi_align`` does (its CPU ``roi_pool`` kernel has no bfloat16; ours pools in fp32 too)."""

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return super().forward({k: v.float() for k, v in features.items()}, [p.float() for p in proposals],
                                   image_shapes)


def build_torchvision_mlp(backbone: str = "vgg16", num_classes: int = 21) -> nn.Module:
    """torchvision's FasterRCNN of ``det_latency.build_torchvision`` with its own ``TwoMLPHead`` of
    our box head's width passed explicitly (VGG16: 512·7·7 → 4096 → 4096)."""
    model = build_torchvision(backbone, num_classes)
    pool = model.roi_heads.box_roi_pool
    model.roi_heads.box_roi_pool = TVRoIPoolAutocast(pool.output_size, pool.spatial_scale)
    body = get_model(backbone)
    width = body.box_head()[1]
    if backbone in ("resnet18", "resnet50"):
        return model  # the C4 head (conv5_x) is no MLP: keep the shared one
    model.roi_heads.box_head = TwoMLPHead(body.out_channels * body.pool_size ** 2, width)
    model.roi_heads.box_predictor = FastRCNNPredictor(width, num_classes)
    return model


def _as_trainer_bf16(model: nn.Module) -> nn.Module:
    """What ``Trainer(amp="bf16")`` does to the model before training on the CPU (engine/trainer.py)."""
    fp32_boundaries(model)
    if prefers_channels_last(model):
        model.to(memory_format=torch.channels_last)
    select_pool_kernels(model)
    select_linear_kernels(model)
    select_banded_stems(model)
    return model


def _plain_linear(model: nn.Module) -> nn.Module:
    """Ours with fc6/fc7 back as plain ``nn.Linear`` (``--plain-linear``)."""
    for module in model.modules():
        if type(module) is BufferedLinear:
            module.__class__ = nn.Linear
    return model


def _as_trainer_fp32(model: nn.Module) -> nn.Module:
    """What ``Trainer(amp="none")`` does to the model on the CPU (engine/trainer.py): VGG16's 3×3
    convolutions by NNPACK's Winograd kernel (``visiontasks/winograd_conv.py``); NCHW; 2×2 max pools
    of the frozen layers without indices (``visiontasks/max_pool.py``); fc6/fc7 with kept buffers
    (``visiontasks/buffered_linear.py``)."""
    if winograd_conv.model_qualifies(model):
        select_conv_kernels(model)
    select_pool_kernels(model)
    select_linear_kernels(model)
    return model


#: name -> (builder, autocast dtype, preparation)
MODELS: dict[str, tuple[Callable[..., nn.Module], torch.dtype | None, Callable[[nn.Module], nn.Module]]] = {
    "ours_fp32": (build_ours, None, _as_trainer_fp32),
    "tv_fp32": (build_torchvision_mlp, None, lambda m: m),
    "ours_bf16": (build_ours, torch.bfloat16, _as_trainer_bf16),
    "tv_bf16": (build_torchvision_mlp, torch.bfloat16, lambda m: m),
}
TV_CL = ("tv_bf16_cl", (build_torchvision_mlp, torch.bfloat16, lambda m: m.to(memory_format=torch.channels_last)))
#: ``--ours-fp32-channels-last``: ours in fp32 but channels-last (the Trainer moves to channels-last only with amp).
OURS_FP32_CL = ("ours_fp32_cl", (build_ours, None, lambda m: m.to(memory_format=torch.channels_last)))
#: ``--plain-linear``: ours without ``BufferedLinear`` (fc6/fc7 as plain ``nn.Linear``), each precision.
PLAIN_LINEAR = {"ours_fp32_plain_linear": (build_ours, None, lambda m: _plain_linear(_as_trainer_fp32(m))),
                "ours_bf16_plain_linear": (build_ours, torch.bfloat16, lambda m: _plain_linear(_as_trainer_bf16(m)))}
#: ``--ours-direct``: ours in fp32 without the Winograd kernel (PyTorch's convolutions, as torchvision's).
OURS_DIRECT = ("ours_fp32_direct", (build_ours, None, lambda m: m))
#: (ours, theirs) compared in each precision.
PAIRS = (("ours_fp32", "tv_fp32"), ("ours_fp32_direct", "tv_fp32"), ("ours_fp32_cl", "tv_fp32"),
         ("ours_fp32_plain_linear", "tv_fp32"), ("ours_bf16", "tv_bf16"), ("ours_bf16", "tv_bf16_cl"),
         ("ours_bf16_plain_linear", "tv_bf16"))


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


def reference_sgd(model: nn.Module) -> torch.optim.Optimizer:
    """torchvision's detection recipe (references/detection/train.py): SGD over the trainable
    parameters, momentum 0.9, weight decay 1e-4 (its defaults), lr 1e-3 here."""
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9,
                           weight_decay=1e-4)


def trainer_sgd(model: nn.Module) -> torch.optim.Optimizer:
    """Ours as the Trainer builds it (``train.optimizer: sgd`` at its defaults), lr 1e-3."""
    return build_optimizer(model, lr=1e-3)


def _training_step(model: nn.Module, images: list[torch.Tensor], targets: list[dict],
                   dtype: torch.dtype | None = None,
                   optimizer: Callable[[nn.Module], torch.optim.Optimizer] = reference_sgd) -> Callable[[], float]:
    opt = optimizer(model)

    def step() -> float:
        with autocast("cpu", dtype):
            total = sum(model(images, targets).values())
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # between steps no gradients are held (several VGG16 models in one process)
        return total.item()
    return step


def _models(args: argparse.Namespace) -> dict:
    return {**MODELS, **(dict([TV_CL]) if args.tv_channels_last else {}),
            **(dict([OURS_DIRECT]) if args.ours_direct else {}),
            **(dict([OURS_FP32_CL]) if args.ours_fp32_channels_last else {}),
            **(PLAIN_LINEAR if args.plain_linear else {})}


def _build_step(name: str, args: argparse.Namespace) -> Callable[[], float]:
    build, dtype, prepare = _models(args)[name]
    torch.manual_seed(0)
    ours = name.startswith("ours") and not args.same_optimizer
    return _training_step(prepare(build(args.backbone).train()), *make_batch(), dtype=dtype,
                          optimizer=trainer_sgd if ours else reference_sgd)


def _measure_memory(name: str, args: argparse.Namespace) -> dict:
    """Peak RSS of a process that builds the model and runs two training iterations."""
    torch.set_num_threads(args.threads)
    step = _build_step(name, args)
    return {"peak_rss_mib": peak_rss_mib(), "last_loss": [step() for _ in range(2)][-1]}


def profile_step(step: Callable[[], float], rows: int = 25) -> str:
    """``torch.profiler``'s operator table (self CPU time) of one call of ``step``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="small", choices=["small", "vgg16", "resnet18", "resnet50", "alexnet"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--tv-channels-last", action="store_true", help="also torchvision bf16 in channels-last")
    parser.add_argument("--ours-fp32-channels-last", action="store_true", help="also ours in fp32, channels-last")
    parser.add_argument("--ours-direct", action="store_true",
                        help="also ours in fp32 with PyTorch's own convolutions (no Winograd kernel)")
    parser.add_argument("--plain-linear", action="store_true",
                        help="also ours with fc6/fc7 as plain nn.Linear (without BufferedLinear's kept buffers)")
    parser.add_argument("--same-optimizer", action="store_true",
                        help="ours with torchvision's optimizer too (torch.optim.SGD loop) instead of the Trainer's")
    parser.add_argument("--only", nargs="+", help="time only these models (names above)")
    parser.add_argument("--profile", nargs="*", default=[], help="print torch.profiler's table of one step of these")
    args = parser.parse_args()
    names = [n for n in _models(args) if not args.only or n in args.only]
    print(f"backbone={args.backbone} batch=2 (375x500 -> 600x800) threads={args.threads} "
          f"iters={args.iters} warmup={args.warmup}")
    memory = {name: ({} if args.no_memory else run_in_child(name, args, target=_measure_memory)) for name in names}
    torch.set_num_threads(args.threads)
    steps = {name: _build_step(name, args) for name in names}

    def show(i: int, name: str, took: float, loss: object) -> None:  # every step as it ends
        print(f"  round {i} ({'warm-up' if i < args.warmup else 'timed'}) {name}: {took:.2f} s, loss {loss:.3f}",
              flush=True)

    times = interleaved_times(steps, args.iters, args.warmup, on_step=show)
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    for name in medians:
        mem = memory[name]
        extra = f"  peak RSS {mem['peak_rss_mib']:7.0f} MiB  loss after 2 its {mem['last_loss']:.3f}" if mem else ""
        print(f"{name:>11s}: median {medians[name]:7.3f} s/it  min {min(times[name]):7.3f}  "
              f"all {' '.join(f'{t:.2f}' for t in times[name])}{extra}")
    for ours, theirs in PAIRS:
        if ours in medians and theirs in medians:
            print(f"step time ratio {ours} / {theirs}: median {medians[ours] / medians[theirs]:.3f}  "
                  f"min {min(times[ours]) / min(times[theirs]):.3f}")
    if "ours_bf16" in medians and "ours_fp32" in medians:
        print(f"step time ratio ours_bf16 / ours_fp32 (median): {medians['ours_bf16'] / medians['ours_fp32']:.3f}")
    for name in args.profile:
        print(f"\n--- torch.profiler, one step of {name} ---\n{profile_step(steps[name])}")


if __name__ == "__main__":
    main()
