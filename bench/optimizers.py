"""The optimizers of the lecture notes on the default detector: loss curves and final mAP.

Each of ``train.optimizer`` = sgd, nesterov, adagrad, rmsprop, adam, adamw trains the default
config (small Faster R-CNN, embedded shapes, no download) for the same number of iterations, one
run after the other, each in its own ``tools/train_det.py`` process (the user's command). The
schedule is the config's (cosine, linear warm-up), shortened to ``--iters`` with the warm-up
scaled to the same share (100 of 1,500 -> iters / 15). The learning rates are per rule (:data:`LRS`,
``--lr name=value`` overrides): SGD-type rules keep the config's 0.02, the adaptive rules use the
usual orders of magnitude (Adagrad 1e-2, RMSprop 2e-4, Adam/AdamW 5e-4); the Caffe bias
convention (bias lr x2, no bias decay) holds for all six (``visiontasks/engine/optim.py``).

    python bench/optimizers.py [--iters 200] [--out runs/bench_optimizers] [--png docs/optimizers.png]
    python bench/optimizers.py --plot-only            # redraw from the runs already there

Writes one PNG with the six ``total_loss`` curves (``log.csv``) and prints a markdown table of the
final VOC07 mAP on the embedded test split (``metrics.json``), the iterations and the wall time.
Printed, never asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: optimizer -> base learning rate (of the weights; biases x2)
LRS: dict[str, float] = {"sgd": 0.02, "nesterov": 0.02, "adagrad": 1e-2, "rmsprop": 2e-4, "adam": 5e-4,
                         "adamw": 5e-4}


def train(name: str, lr: float, iters: int, out: Path) -> float:
    """Trains one run (``--overwrite``); returns its wall seconds."""
    warmup = max(1, round(iters * 100 / 1500))
    cmd = [sys.executable, str(REPO / "tools" / "train_det.py"), "--out", str(out), "--overwrite",
           f"train.optimizer={name}", f"train.lr={lr}", f"train.max_iters={iters}",
           f"train.warmup_iters={warmup}", f"train.checkpoint_every={iters}", "train.log_every=10"]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    (out / "bench_wall_s.txt").write_text(f"{wall:.1f}\n")
    return wall


def read_curve(run: Path) -> tuple[list[int], list[float]]:
    """``(iterations, total_loss)`` rows of ``run/log.csv``."""
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["iteration"]) for r in rows], [float(r["total_loss"]) for r in rows]


def plot(runs: dict[str, Path], png: Path, iters: int) -> None:
    """The loss curves of ``runs`` in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, run in runs.items():
        if (run / "log.csv").is_file():
            x, y = read_curve(run)
            ax.plot(x, y, label=f"{name} (lr {LRS[name]:g})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("total loss (mean of 10 iterations)")
    ax.set_yscale("log")
    ax.set_title(f"Default detector, {iters} iterations, train.optimizer = ...")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench_optimizers"))
    parser.add_argument("--png", default=str(REPO / "docs" / "optimizers.png"))
    parser.add_argument("--only", default=",".join(LRS), help="comma-separated subset")
    parser.add_argument("--lr", action="append", default=[], help="name=value, e.g. adam=1e-4")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    for item in args.lr:
        name, _, value = item.partition("=")
        LRS[name] = float(value)
    names = [n for n in args.only.split(",") if n]
    runs = {n: Path(args.out) / n for n in names}
    if not args.plot_only:
        for name, run in runs.items():
            wall = train(name, LRS[name], args.iters, run)
            print(f"{name}: {wall:.0f} s", flush=True)
            plot(runs, Path(args.png), args.iters)
    plot(runs, Path(args.png), args.iters)
    print("| train.optimizer | lr (weights; biases x2) | iterations | wall | final loss | VOC07 mAP |")
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        if not (run / "metrics.json").is_file():
            continue
        m = json.loads((run / "metrics.json").read_text()).get("mAP")
        _, y = read_curve(run)
        wall = (run / "bench_wall_s.txt").read_text().strip() if (run / "bench_wall_s.txt").is_file() else "?"
        mp = "n/a" if m is None else f"{100 * m:.2f}"
        print(f"| {name} | {LRS[name]:g} | {args.iters} | {wall} s | {y[-1]:.3f} | {mp} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
