"""Training logs of a run directory: ``log.csv``, TensorBoard scalars, a progress bar, ``loss.png``.

``log.csv`` has one row every ``log_every`` iterations (and at the last one): ``iteration`` (the
number of iterations completed), ``lr`` (of the weights group), each loss and ``total_loss``
averaged over the iterations since the previous row, and ``sec_per_iter``. Evaluation results
go to ``eval_log.jsonl`` (one JSON object per evaluation) and to TensorBoard under ``eval/``.

On resume from iteration ``k`` the rows (and TensorBoard events) past ``k`` — written after the
checkpoint by the interrupted run — are dropped before appending, so no iteration is logged
twice (the reading and cutting: :mod:`visiontasks.engine.log_files`); the averaging window in
progress is part of the checkpoint (:meth:`TrainLogger.state_dict`).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from visiontasks.errors import InputError
from visiontasks.engine.log_files import truncate_csv, truncate_jsonl

__all__ = ["TrainLogger", "plot_loss_curve", "scalar_metrics"]


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flattens the numbers of an evaluation result (one level of nesting, e.g. ``per_class/cat``)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and not prefix:
            out.update(scalar_metrics(value, f"{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
        elif hasattr(value, "ndim") and getattr(value, "ndim") == 0:  # numpy / torch scalar
            out[f"{prefix}{key}"] = float(value)
    return out


class TrainLogger:
    """CSV + TensorBoard + tqdm logging for iterations ``start_iter + 1 .. max_iters``.

    Args:
        out_dir: the run directory.
        max_iters: last iteration (progress bar total).
        start_iter: iterations already done (rows past it are dropped from earlier logs).
        log_every: write a row every this many iterations (and at ``max_iters``).
        enabled: False on ranks other than 0 (nothing is written nor shown).
        evaluates_first: the resumed run evaluates at ``start_iter`` before anything else (a finished
            run resumed, or an evaluation a signal left pending): an earlier record of ``start_iter``
            is dropped too, so that evaluation is not logged twice.
    """

    def __init__(self, out_dir: str | os.PathLike[str], max_iters: int, start_iter: int = 0,
                 log_every: int = 20, enabled: bool = True, evaluates_first: bool = False) -> None:
        if log_every <= 0:
            raise ValueError(f"log_every must be positive, got {log_every!r}")
        self.out_dir = Path(out_dir)
        self.csv_path = self.out_dir / "log.csv"
        self.eval_path = self.out_dir / "eval_log.jsonl"
        self.max_iters, self.log_every, self.enabled = max_iters, log_every, enabled
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # a loss may be missing from some iterations
        self._count = 0
        self._estimated = False  # the wall-time estimate is printed once
        self._t0 = time.perf_counter()
        self._fields: list[str] = []
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._fields = truncate_csv(self.csv_path, start_iter)
        truncate_jsonl(self.eval_path, start_iter - 1 if evaluates_first else start_iter)
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_iter + 1 if start_iter else None)
        self._bar = tqdm(total=max_iters, initial=start_iter, desc="train", unit="it", dynamic_ncols=True)

    def state_dict(self) -> dict[str, Any]:
        """The averaging window in progress (checkpointed so a resumed run logs the same rows)."""
        return {"sums": dict(self._sums), "counts": dict(self._counts), "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        self._sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self._count = int(state.get("count", 0))
        self._counts = {k: int(v) for k, v in state.get("counts", dict.fromkeys(self._sums, self._count)).items()}

    def log_iteration(self, iteration: int, lr: float, losses: dict[str, float]) -> None:
        """Records iteration ``iteration`` (1-based count of completed iterations).

        Args:
            iteration: iterations completed, including this one.
            lr: the learning rate this iteration used.
            losses: name -> value (already averaged over ranks), without the total.
        """
        values = {**losses, "total_loss": math.fsum(losses.values())}
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{values['total_loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        if iteration % self.log_every and iteration != self.max_iters:
            return
        now = time.perf_counter()
        row = {"iteration": iteration, "lr": lr, **{k: s / self._counts[k] for k, s in self._sums.items()},
               "sec_per_iter": (now - self._t0) / self._count}
        window = self._count
        self._sums, self._counts, self._count, self._t0 = {}, {}, 0, now
        if self.enabled and not self._estimated and iteration < self.max_iters:
            self._estimated = True  # once, after the first logged window (docs/OWN_DATA.md)
            left = (self.max_iters - iteration) * row["sec_per_iter"]
            self.write(f"estimated wall time: {_duration(left)} for the {self.max_iters - iteration} iterations left "
                       f"({row['sec_per_iter']:.3f} s/iter over the last {window}; evaluation and checkpoints "
                       "not included)")
        if self.enabled:
            self._write_row(row)
            for key, value in row.items():
                if key != "iteration":
                    self._writer.add_scalar(f"train/{key}", value, iteration)

    def _write_row(self, row: dict[str, Any]) -> None:
        new_fields = [k for k in row if k not in self._fields]
        if new_fields:  # first row, or a loss that was not there before: rewrite with a wider header
            old = []
            if self.csv_path.is_file():
                with self.csv_path.open(newline="", encoding="utf-8") as f:
                    old = list(csv.DictReader(f))
            self._fields = [*self._fields, *new_fields]
            with self.csv_path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, self._fields)
                writer.writeheader()
                writer.writerows(old)
        try:
            with self.csv_path.open("a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self._fields).writerow({k: repr(v) if isinstance(v, float) else v
                                                          for k, v in row.items()})
        except OSError as exc:  # a full disk: name the file
            raise OSError(exc.errno, exc.strerror, str(self.csv_path)) from exc

    def log_metrics(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Records an evaluation: numbers to TensorBoard (``eval/…``) and ``eval_log.jsonl``."""
        if not self.enabled:
            return
        flat = scalar_metrics(metrics)
        for key, value in flat.items():
            self._writer.add_scalar(f"eval/{key}", value, iteration)
        self._writer.flush()
        with self.eval_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"iteration": iteration, **{k: (None if math.isnan(v) else v)
                                                           for k, v in flat.items()}}) + "\n")
        headline = {k: v for k, v in flat.items() if "/" not in k}
        self.write(f"iteration {iteration}: " + ", ".join(f"{k}={v:.4f}" for k, v in headline.items()))

    def write(self, message: str) -> None:
        """Prints a line without breaking the progress bar (rank 0 only)."""
        if self.enabled:
            tqdm.write(message)

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer and the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``12 s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def plot_loss_curve(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str]) -> Path:
    """Draws every loss column of ``log.csv`` against the iteration (matplotlib, Agg backend).

    Args:
        csv_path: a ``log.csv`` written by :class:`TrainLogger`.
        png_path: the image to write.

    Returns:
        ``png_path`` as a Path.

    Raises:
        InputError: the CSV is missing or has no rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path, png_path = Path(csv_path), Path(png_path)
    if not csv_path.is_file():
        raise InputError(csv_path, "training log not found")
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(csv_path, "training log has no rows")
    its = [int(r["iteration"]) for r in rows]
    columns = [k for k in rows[0] if k not in ("iteration", "lr", "sec_per_iter")]
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for key in columns:
            pts = [(i, float(r[key])) for i, r in zip(its, rows) if r.get(key) not in (None, "")]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key,
                    linewidth=2.0 if key == "total_loss" else 1.0)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_title("training loss")
        ax.grid(True, alpha=0.3)
        ax.legend()
        png_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png_path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png_path
