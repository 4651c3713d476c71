"""Resident memory over many ``predict()`` calls on the default detector (issue 26: a long-lived service).

Runs ``--n`` calls (10,000 by default) of ``visiontasks.load_model("default").predict(image)`` in one
process on a rotating set of inputs of ``--sizes`` (several image sizes, so the anchor cache, the
small-map conv kernel choices and the allocator all see the variety a service sees; half the
inputs are uint8 numpy arrays, half uint8 tensors; preset ``evaluate`` so results hold boxes),
and prints the process's current resident set size (``/proc/self/statm``, after ``gc.collect()``)
every ``--every`` calls. Growth is reported from the end of the warm-up (``--warmup`` calls, which
fill the one-off caches) to the last call, in total and as the least-squares slope over the samples
(KiB per 1,000 calls). Figures are printed, never asserted.

    python bench/predict_memory.py [--n 10000] [--every 500] [--warmup 200] [--threads 2] [--precision fp32]
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import time

import numpy as np
import torch

import visiontasks

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """The current resident set size of this process, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def slope_kib_per_1000(calls: list[int], rss: list[float]) -> float:
    """Least-squares slope of RSS (MiB) against the call count, in KiB per 1,000 calls."""
    if len(calls) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(calls, float), np.asarray(rss, float), 1)[0]) * 1024 * 1000


def make_inputs(sizes: list[tuple[int, int]], per_size: int = 2, seed: int = 0) -> list:
    """Random uint8 RGB images of each ``(height, width)``: numpy HWC and torch CHW alternately."""
    rng = np.random.default_rng(seed)
    inputs = []
    for k, (h, w) in enumerate(sizes * per_size):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs.append(array if k % 2 == 0 else torch.from_numpy(array).permute(2, 0, 1).contiguous())
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="predict() calls after the warm-up")
    parser.add_argument("--every", type=int, default=500, help="print RSS every this many calls")
    parser.add_argument("--warmup", type=int, default=200, help="calls before the baseline RSS")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--sizes", default="256x256,240x320,480x640,375x500,100x60",
                        help="comma-separated HxW input sizes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    inputs = make_inputs(sizes)
    start_rss = rss_mib()
    model = visiontasks.load_model("default", preset="evaluate", precision=args.precision)
    print(f"torch {torch.__version__}, {args.threads} threads, precision {args.precision}, sizes {args.sizes}; "
          f"RSS before load_model {start_rss:.1f} MiB, after {rss_mib():.1f} MiB", flush=True)
    boxes = 0
    for i in range(args.warmup):
        boxes += len(model.predict(inputs[i % len(inputs)]).boxes)
    gc.collect()
    base = rss_mib()
    calls, samples = [0], [base]
    t0 = time.perf_counter()
    print(f"{'calls':>7} {'RSS MiB':>9} {'growth MiB':>11} {'ms/call':>8}", flush=True)
    print(f"{0:>7} {base:>9.1f} {0.0:>11.2f} {'':>8}", flush=True)
    last_t, last_i = t0, 0
    for i in range(1, args.n + 1):
        result = model.predict(inputs[i % len(inputs)])
        boxes += len(result.boxes)
        if i % args.every == 0 or i == args.n:
            gc.collect()
            now, rss = time.perf_counter(), rss_mib()
            calls.append(i)
            samples.append(rss)
            print(f"{i:>7} {rss:>9.1f} {rss - base:>11.2f} {1000 * (now - last_t) / (i - last_i):>8.1f}", flush=True)
            last_t, last_i = now, i
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    half = len(calls) // 2
    print(f"{args.n} calls in {time.perf_counter() - t0:.0f} s ({boxes} boxes in all): RSS {base:.1f} -> "
          f"{samples[-1]:.1f} MiB, growth {samples[-1] - base:+.2f} MiB; slope {slope_kib_per_1000(calls, samples):+.1f} "
          f"KiB per 1000 calls (second half alone: {slope_kib_per_1000(calls[half:], samples[half:]):+.1f}); "
          f"peak RSS {peak:.1f} MiB")


if __name__ == "__main__":
    main()
