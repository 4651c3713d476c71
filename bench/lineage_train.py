"""Accuracy beside speed: each small detection config trained and scored on the embedded data.

Every row runs ``tools/train_det.py --config C`` in its own process (the user's command, embedded
shapes dataset, no download), one after the other, and reports the VOC07 mAP on the embedded
test split (100 images) next to the CPU time the run used (user + system of the process and its
DataLoader workers, the machine-independent "CPU budget") and its wall time. The small configs are
sized to about ten minutes of the 2-core machine each; ``--scale`` multiplies every row's
``train.max_iters`` (cosine schedules stretch with it) for a quick look at a smaller budget.

    python bench/lineage_train.py [--rows default,fast_rcnn_small,...] [--scale 1.0] [--threads 2]
        [--set train.amp=none ...]   # extra config overrides given to every row

Rows train with their configs' ``train.amp`` (``auto``: bf16 on a CPU with native bf16, else fp32);
``--set train.amp=none`` trains in fp32 as the figures of 2026-11-29 did.

Printed, never asserted. R-CNN's row includes its feature caching, SVM and box-regression stages;
SPP-net's includes its SVM stages. The proposal-fed rows read selective search from the cache
under $VISIONTASKS_HOME (``data.proposals: auto``) and compute it only when it is absent, so their
proposal time is in the budget of a first run only (as the papers exclude it from training time).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/lineage_train.py` from a checkout
    sys.path.insert(0, str(REPO))
CONFIGS = REPO / "configs" / "detection"

#: row → (config file, the paper's VOC07 mAP of the full model for reference).
ROWS: dict[str, tuple[str, str]] = {
    "faster_rcnn (default)": ("default.yaml", "69.9 (VGG16, 07 trainval)"),
    "fast_rcnn_small": ("fast_rcnn_small.yaml", "66.9 (VGG16)"),
    "spp_net_small": ("spp_net_small.yaml", "59.2 (ZF-5, 5 scales, SVM)"),
    "rcnn_small": ("rcnn_small.yaml", "66.0 (VGG16, bbox reg)"),
    "yolov1_small": ("yolov1_small.yaml", "63.4 (07+12)"),
}


def _max_iters(config: Path) -> int:
    from visiontasks.config import load_config

    return int(load_config(str(config))["train"]["max_iters"])


def run_row(name: str, out: Path, scale: float, threads: int, overrides: list[str] = ()) -> dict:
    """Trains one config in a subprocess; returns its figures (or the error line).

    Args:
        name: a key of :data:`ROWS`.
        out: the run folder.
        scale: multiplies the config's ``train.max_iters``.
        threads: ``OMP_NUM_THREADS`` of the run.
        overrides: extra ``key=value`` config overrides.

    Returns:
        name, config, iterations, CPU and wall seconds, mAP and per-class AP (or name, error, wall seconds).
    """
    config = CONFIGS / ROWS[name][0]
    iters = max(1, round(_max_iters(config) * scale))
    cmd = [sys.executable, str(REPO / "tools" / "train_det.py"), "--config", str(config), "--out", str(out),
           f"train.max_iters={iters}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        return {"name": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall_s": wall}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"name": name, "config": config.name, "iters": iters, "cpu_s": cpu, "wall_s": wall,
            "mAP": metrics.get("mAP"), "per_class": metrics.get("per_class")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every config's train.max_iters")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to every row (repeatable), e.g. train.amp=none")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"error: unknown rows {unknown}; known: {list(ROWS)}")
    if not args.scale > 0:
        sys.exit(f"error: --scale must be > 0, got {args.scale}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in rows:
            res = run_row(name, Path(tmp) / name.split()[0], args.scale, args.threads, args.set)
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "per_class"}), file=sys.stderr, flush=True)
    extra = f", overrides {' '.join(args.set)}" if args.set else ""
    print(f"\nembedded test split (100 images), {args.threads} threads, iterations × {args.scale}{extra}\n")
    print("| config | iterations | CPU min | wall min | VOC07 mAP | paper (full model, VOC07 test) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        paper = ROWS[r["name"]][1]
        if "error" in r:
            print(f"| {r['name']} | | | {r['wall_s'] / 60:.1f} | {r['error']} | {paper} |")
            continue
        m = "n/a" if r["mAP"] is None else f"{100 * r['mAP']:.2f}"
        print(f"| {r['name']} | {r['iters']:,} | {r['cpu_s'] / 60:.1f} | {r['wall_s'] / 60:.1f} | {m} | {paper} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
