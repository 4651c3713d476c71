"""CPU inference latency and peak memory of the segmentation models, beside torchvision's.

Each model runs in its own subprocess (so that its memory figures are its own): build it (random
weights, eval mode), run one warm-up forward pass on a random (1, 3, H, W) image, then ``--runs``
timed passes under ``torch.inference_mode``; report the median and minimum wall time, the parameter
count, the RSS once the model is built, and the peak RSS of the forward passes (Linux: ``VmHWM``,
reset through ``/proc/self/clear_refs`` after building so that construction temporaries do not
count; elsewhere ``ru_maxrss``), also net of the bare torch process's RSS. The baselines are
``torchvision.models.segmentation.fcn_resnet50`` and ``deeplabv3_resnet50`` (``weights=None,
weights_backbone=None``, no aux head).

    python bench/seg_latency.py [--runs 3] [--height 375] [--width 500] [--threads 2] [--models fcn8s deconvnet]
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

OURS = ("fcn32s", "fcn16s", "fcn8s", "deconvnet", "dilated_frontend", "dilated_context")
TORCHVISION = ("tv_fcn_resnet50", "tv_deeplabv3_resnet50")


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Resets the peak RSS (VmHWM) of this process (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _build(name: str, num_classes: int):
    if name in TORCHVISION:
        from torchvision.models import segmentation

        builder = getattr(segmentation, name[len("tv_"):])
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    from visiontasks import get_model

    return get_model(name, num_classes=num_classes, pretrained_backbone=False)


def worker(name: str, runs: int, height: int, width: int, threads: int, fast: bool = False) -> dict:
    """Measures one model in this process; returns the row as a dict."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    import_rss = _status_mb("VmRSS")
    model = _build(name, 21).eval()
    gc.collect()
    model_rss = _status_mb("VmRSS")
    reset = _reset_peak()
    params = sum(p.numel() for p in model.parameters())
    image = torch.rand(1, 3, height, width)
    times = []
    with torch.inference_mode():
        out = model(image)["out"]  # warm-up
        if out.shape[-2:] != (height, width):
            raise RuntimeError(f"{name}: output {tuple(out.shape)} for a {height}x{width} input")
        for _ in range(runs):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"model": name, "params": params, "median_s": statistics.median(times), "min_s": min(times),
           "import_rss_mb": import_rss, "model_rss_mb": model_rss, "infer_peak_rss_mb": peak,
           "peak_is_inference_only": reset}
    if fast:
        row.update(fast_paths(model, image, runs))
    return row


def fast_paths(model, image, runs: int) -> dict:
    """Minimum seconds of fp32 NCHW, fp32 channels-last and bf16 autocast channels-last (bf16 weights,
    float32 at the parts' boundaries, as ``load_model(precision="bf16")``), interleaved in this process."""
    import torch

    from visiontasks.precision import autocast, cast_dense_weights, fp32_boundaries

    nchw = copy.deepcopy(model)
    fast = model.to(memory_format=torch.channels_last)
    bf16 = cast_dense_weights(copy.deepcopy(fast), torch.bfloat16)
    fp32_boundaries(bf16)
    ways = {"fp32_nchw_s": (nchw, None), "fp32_cl_s": (fast, None), "bf16_cl_s": (bf16, torch.bfloat16)}
    best = {key: float("inf") for key in ways}
    with torch.inference_mode():
        for i in range(runs + 1):
            for key, (m, dtype) in ways.items():
                start = time.perf_counter()
                with autocast("cpu", dtype):
                    m(image)
                if i:
                    best[key] = min(best[key], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed forward passes per model (median reported)")
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models", nargs="+", default=list(OURS + TORCHVISION), choices=OURS + TORCHVISION)
    parser.add_argument("--fast", action="store_true",
                        help="also time fp32 NCHW, fp32 channels-last and bf16 channels-last side by side (min)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs, args.height, args.width, args.threads, args.fast)))
        return 0
    print(f"CPU inference at {args.width}x{args.height} (WxH), batch 1, {args.runs} timed runs after 1 warm-up, "
          f"{args.threads} threads; {os.cpu_count()} CPUs on {platform.machine()} "
          f"(shared machine: timings are noisy)")
    header = (f"{'model':24s} {'params':>8s} {'median s':>9s} {'min s':>7s} {'weights+runtime MB':>19s} "
              f"{'peak infer MB':>14s} {'peak - import MB':>17s}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        cmd = [sys.executable, __file__, "--worker", name, "--runs", str(args.runs), "--height", str(args.height),
               "--width", str(args.width), "--threads", str(args.threads)] + (["--fast"] if args.fast else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            print(f"{name:24s} failed: {reason}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{r['model']:24s} {r['params'] / 1e6:7.1f}M {r['median_s']:9.2f} {r['min_s']:7.2f} "
              f"{r['model_rss_mb']:19.0f} {r['infer_peak_rss_mb']:14.0f} "
              f"{r['infer_peak_rss_mb'] - r['import_rss_mb']:17.0f}", flush=True)
        if args.fast:
            print(f"{'':24s} min s: fp32 NCHW {r['fp32_nchw_s']:.2f}, fp32 channels-last {r['fp32_cl_s']:.2f}, "
                  f"bf16 channels-last {r['bf16_cl_s']:.2f} ({r['bf16_cl_s'] / r['fp32_nchw_s']:.2f}x)", flush=True)
    print("weights+runtime: RSS after building the model; peak infer: peak RSS during the forward passes "
          "(reset after building); peak - import: that peak minus the RSS of the bare torch process.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
