"""Resident memory over many checkpoint evaluations in one process (issue 26: ``tools/eval.py`` over a long run).

A user scoring every checkpoint of a run from one Python process (a notebook, a sweep script, a
service) calls what ``tools/eval.py det --checkpoint`` calls. This bench copies the shipped detector
(``weights/default_det.pt``) into a run folder as ``--n`` distinct checkpoint files
(``checkpoint_0001.pt`` …, so a cache keyed by path would show up as growth) and scores each one, in
turn, through ``tools/eval.py``'s own ``main()`` in-process (``det --checkpoint FILE --root EMBEDDED
--split test --out FILE.json``: :func:`visiontasks.api.load_for_task`, then
:func:`visiontasks.engine.evaluate.evaluate_detection` on the embedded dataset, the JSON written). With
``--seg`` every other evaluation is ``seg`` on the shipped segmenter. After each it prints the
anonymous resident memory (``RssAnon`` of ``/proc/self/status``, after ``gc.collect()``; the total
``VmRSS`` also counts library pages that the kernel drops under other processes' memory pressure);
growth is reported from the end of the warm-up (``--warmup`` evaluations, which fill the one-off
caches) to the last, in total and as the least-squares slope (KiB per evaluation). Figures are printed, never asserted.

    python bench/eval_memory.py [--n 40] [--warmup 3] [--images 30] [--threads 1] [--seg]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mib(field: str = "RssAnon") -> float:
    """The process's resident memory in MiB from ``/proc/self/status``: ``RssAnon`` (heap and other anonymous
    pages: what a leak grows) or ``VmRSS`` (all, including shared-library pages that the kernel drops and
    reloads when other processes need memory, so it moves without any allocation)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def eval_tool_main():
    """``tools/eval.py``'s ``main`` (imported from the file, as the tool runs it)."""
    sys.path.insert(0, str(REPO / "tools"))
    spec = importlib.util.spec_from_file_location("eval_tool", REPO / "tools" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="evaluations after the warm-up (distinct checkpoint files)")
    parser.add_argument("--warmup", type=int, default=3, help="evaluations before the baseline RSS")
    parser.add_argument("--images", type=int, default=30, help="test images of the embedded dataset")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seg", action="store_true", help="alternate det and seg evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from visiontasks.api import DEFAULT_SEG_WEIGHTS, DEFAULT_WEIGHTS
    from visiontasks.data import build_embedded_dataset

    tmp = Path(tempfile.mkdtemp(prefix="eval_memory_"))
    try:
        root = build_embedded_dataset(tmp / "data", num_trainval=1, num_test=args.images)
        run = tmp / "run"
        run.mkdir()
        total = args.warmup + args.n
        jobs = []
        for i in range(1, total + 1):
            seg = args.seg and i % 2 == 0
            ckpt = run / f"checkpoint_{i:04d}{'_seg' if seg else ''}.pt"
            shutil.copyfile(DEFAULT_SEG_WEIGHTS if seg else DEFAULT_WEIGHTS, ckpt)
            task, split = ("seg", "val") if seg else ("det", "test")
            jobs.append([task, "--checkpoint", str(ckpt), "--root", str(root), "--split", split,
                         "--out", str(ckpt.with_suffix(".json"))])
        tool = eval_tool_main()
        print(f"torch {torch.__version__}, {args.threads} threads, {args.images} test images, {total} checkpoints "
              f"({'det and seg alternating' if args.seg else 'det'}); RssAnon at start {rss_mib():.1f} MiB", flush=True)
        print(f"{'eval':>5} {'RssAnon MiB':>11} {'growth MiB':>11} {'VmRSS MiB':>10} {'s/eval':>7}", flush=True)
        done, samples, base, t0 = [], [], None, time.perf_counter()
        for i, argv in enumerate(jobs, start=1):
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = tool(argv)
            if code != 0:
                raise SystemExit(f"eval.py {' '.join(argv)} exited {code}")
            gc.collect()
            rss = rss_mib()
            if i == args.warmup or (base is None and args.warmup == 0):
                base = rss
            if i >= args.warmup and base is not None:
                done.append(i - args.warmup)
                samples.append(rss)
            print(f"{i:>5} {rss:>11.1f} {rss - (base or rss):>11.2f} {rss_mib('VmRSS'):>10.1f} "
                  f"{time.perf_counter() - t:>7.1f}", flush=True)
        slope = float(np.polyfit(done, samples, 1)[0]) * 1024 if len(done) > 1 else float("nan")
        half = len(done) // 2
        late = float(np.polyfit(done[half:], samples[half:], 1)[0]) * 1024 if len(done) - half > 1 else float("nan")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.n} evaluations after {args.warmup} warm-up in {time.perf_counter() - t0:.0f} s: RssAnon "
              f"{base:.1f} -> {samples[-1]:.1f} MiB, growth {samples[-1] - base:+.2f} MiB; slope {slope:+.1f} KiB "
              f"per evaluation (second half alone: {late:+.1f}); peak VmRSS {peak:.1f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
