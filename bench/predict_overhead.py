"""``predict()`` as users call it, against torchvision's ``FasterRCNN`` called on a float tensor (issue 24).

The measurement of issue 24, section "predict() as users call it": ``load_model(cfg).predict(uint8
array)`` on a 375×500 image (resized to 600×800 inside the model), random weights, against
torchvision's ``FasterRCNN`` with the same VGG16 (``vgg16().features[:-1]``) and a 4,096-wide
``TwoMLPHead`` (``bench/det_latency.py``'s ``tv_native_4096``), called as ``model([x])`` under
``torch.inference_mode()`` on a (3, 375, 500) float tensor in [0, 1] made once beforehand.
Ours is timed from the uint8 HWC array to the result object, everything included; each side at
its defaults (our ``visualize`` preset, torchvision's ``box_score_thresh`` 0.05).

``--runs`` runs (3), each a warm-up round then ``--calls`` (4) interleaved rounds (ours fp32,
ours bf16, torchvision, ours fp32, …, so the load of other processes hits all alike); per run the
minimum call of each model and the ratios ours / torchvision are printed. Figures are printed,
never asserted.

``--network`` adds our models called directly on that float tensor (the network alone, as
``bench/det_latency.py`` calls them), so ``predict()``'s own share is measured, not inferred;
``--preprocess N`` times the conversion and transform alone (before and after issue 24's change).
``--profile`` also splits one call of each model into stages by time stamps (wrapped methods and
forward hooks, no profiler overhead inside the kernels): input conversion (``to_tensor_image``),
normalisation, resize, batching (padding), backbone, proposals (RPN), RoI head, postprocess
(boxes back to original pixels) and the rest (result objects, autocast, hooks).

    python bench/predict_overhead.py [--runs 3 --calls 4 --threads 2] [--profile] [--config FILE] [--image FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from det_latency import build_torchvision_native_4096, interleaved_times  # noqa: E402

import visiontasks.api as api  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/detection/faster_rcnn_vgg16_voc07.yaml"
#: A 375×500 VOC-sized photo of the shared data; a seeded random image where it is absent.
IMAGE = ROOT.parent / "shared/data/coco128-voc/VOC2007/JPEGImages/000000000077.jpg"
STAGES = ("conversion", "normalise", "resize", "batch", "backbone", "proposals", "roi_head", "postprocess", "other")


def load_image(path: Path | None, height: int = 375, width: int = 500) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array: ``path`` decoded, or seeded noise of ``height`` × ``width``."""
    if path is not None and path.is_file():
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def torchvision_step(model: nn.Module, image: np.ndarray) -> Callable[[], object]:
    """torchvision's model called as its users do: a float (3, H, W) tensor in [0, 1], made once."""
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255).contiguous()

    def step() -> object:
        with torch.inference_mode():
            return model([x])
    return step


@contextlib.contextmanager
def stage_clock(model: nn.Module, totals: dict[str, float]) -> Iterator[None]:
    """Adds each stage's seconds of ``model``'s calls (ours or torchvision's) into ``totals``.

    Wraps ``api.to_tensor_image`` and the transform's ``normalize`` / ``resize`` / ``batch_images`` /
    ``postprocess`` (instance attributes, removed on exit), and times the backbone, proposer and
    RoI head with forward hooks.
    """
    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    transform = model.transform
    wrapped = {"normalise": "normalize", "resize": "resize", "batch": "batch_images", "postprocess": "postprocess"}
    for stage, attr in wrapped.items():
        setattr(transform, attr, timed(stage, getattr(transform, attr)))
    parts = {"backbone": model.backbone,
             "proposals": getattr(model, "proposer", None) or getattr(model, "rpn", None),
             "roi_head": getattr(model, "roi_head", None) or getattr(model, "roi_heads", None)}
    starts: dict[str, float] = {}
    handles = []
    for stage, part in parts.items():
        handles.append(part.register_forward_pre_hook(
            lambda _m, _i, s=stage: starts.__setitem__(s, time.perf_counter())))
        handles.append(part.register_forward_hook(
            lambda _m, _i, _o, s=stage: totals.__setitem__(s, totals.get(s, 0.0) + time.perf_counter() - starts[s])))
    original = api.to_tensor_image
    api.to_tensor_image = timed("conversion", original)
    try:
        yield
    finally:
        api.to_tensor_image = original
        for attr in wrapped.values():
            delattr(transform, attr)
        for handle in handles:
            handle.remove()


def profile(steps: dict[str, Callable[[], object]], models: dict[str, nn.Module], calls: int) -> None:
    """Prints the stage split (ms, the minimum over ``calls`` interleaved calls per stage)."""
    best: dict[str, dict[str, float]] = {name: {} for name in steps}
    for _ in range(calls):
        for name, step in steps.items():
            totals: dict[str, float] = {}
            with stage_clock(models[name], totals):
                t0 = time.perf_counter()
                step()
                total = time.perf_counter() - t0
            totals["other"] = total - sum(totals.values())
            totals["total"] = total
            for stage, sec in totals.items():
                best[name][stage] = min(best[name].get(stage, float("inf")), sec)
    print(f"{'stage (min ms)':>16s} " + " ".join(f"{name:>13s}" for name in steps))
    for stage in (*STAGES, "total"):
        print(f"{stage:>16s} " + " ".join(f"{1000 * best[name].get(stage, 0.0):13.1f}" for name in steps))


def preprocess_times(predictor: api.Predictor, tv: nn.Module, image: np.ndarray, repeats: int) -> dict[str, float]:
    """Minimum seconds, over ``repeats`` interleaved calls, of everything before the backbone: the
    array's conversion plus the model's transform (normalise, resize, pad), ours now, ours with the
    conversion ``predict`` used before issue 24 (a permuted uint8 view cast and divided: strided),
    and torchvision's transform on its float tensor."""
    model = predictor.model
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255).contiguous()
    steps = {"ours (predict's conversion)": lambda: model.transform([api.to_tensor_image(image)]),
             "ours, before (permuted view)": lambda: model.transform(
                 [torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255.0]),
             "torchvision (float tensor)": lambda: tv.transform([x])}
    with torch.inference_mode():
        times = interleaved_times(steps, repeats, warmup=2)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--image", type=Path, default=IMAGE, help="a photo (default: a 375x500 shared VOC image)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=4, help="timed interleaved calls per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also split each model's call into stages")
    parser.add_argument("--network", action="store_true",
                        help="also time our models called directly on the float tensor (the network alone)")
    parser.add_argument("--preprocess", type=int, default=50, metavar="N",
                        help="time conversion + transform alone, N interleaved calls (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = load_image(args.image)
    ours = {"ours_fp32": api.load_model(args.config), "ours_bf16": api.load_model(args.config, precision="bf16")}
    tv = build_torchvision_native_4096().eval()
    steps: dict[str, Callable[[], object]] = {name: (lambda p=p: p.predict(image)) for name, p in ours.items()}
    steps["torchvision"] = torchvision_step(tv, image)
    models = {**{name: p.model for name, p in ours.items()}, "torchvision": tv}
    if args.network:
        steps.update({f"{name}_net": torchvision_step(p.model, image) for name, p in ours.items()})
    if args.preprocess:
        pre = preprocess_times(ours["ours_fp32"], tv, image, args.preprocess)
        print(f"conversion + transform (normalise, resize, pad), min of {args.preprocess}: "
              + ", ".join(f"{name} {1000 * sec:.2f} ms" for name, sec in pre.items()))
    print(f"image {image.shape[0]}x{image.shape[1]} uint8 -> 600 short side; threads={args.threads} "
          f"runs={args.runs} calls={args.calls}; config {args.config.name}")
    ratios: dict[str, list[float]] = {"ours_fp32": [], "ours_bf16": []}
    for run in range(args.runs):
        times = interleaved_times(steps, args.calls, warmup=1)
        best = {name: min(t) for name, t in times.items()}
        for name in ratios:
            ratios[name].append(best[name] / best["torchvision"])
            if args.network:
                print(f"  {name}: predict() / its network alone {best[name] / best[name + '_net']:.4f}")
        print(f"run {run + 1}: min ms " + "  ".join(f"{n} {1000 * b:.0f}" for n, b in best.items()) + "  ratio "
              + "  ".join(f"{n} {r[-1]:.3f}" for n, r in ratios.items()))
    for name, values in ratios.items():
        print(f"{name} / torchvision (min of {args.calls} per run, {args.runs} runs): "
              + ", ".join(f"{v:.3f}" for v in values))
    if args.profile:
        profile({name: steps[name] for name in models}, models, args.calls)


if __name__ == "__main__":
    main()
