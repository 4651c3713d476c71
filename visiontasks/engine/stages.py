"""Training as an explicit list of stages, each resumable and logged.

Faster R-CNN and the segmenters train in one stage (SGD). R-CNN and SPP-net add stages after
fine-tuning — caching region features, fitting per-class SVMs, fitting ridge box regressors —
so the engine runs a list instead of branching on the model. A model declares its list with
``model.training_stages()`` (default: ``[SGDStage()]``); :func:`run_stages` runs them in order.

A stage is an object with a ``name`` and ``run(ctx) -> dict`` (a small JSON-able summary).
The SGD stage resumes from its own checkpoint; any other stage that finished is recorded in
``stages.json`` (written atomically) and skipped on ``--resume``; one that was interrupted runs
again (a stage keeps its partial work in its own files if it wants finer resumption). Each
stage logs its start and end on the console and in ``stages.json`` with its duration.

Shape shorthand: none (orchestration only).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from visiontasks.engine.distributed import is_main_process
from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["Stage", "StageContext", "SGDStage", "StageLog", "run_stages", "model_stages"]

STAGES_FILE = "stages.json"


@dataclass
class StageContext:
    """What a stage may use. ``metrics`` is filled by the stage that evaluates (the last one)."""

    cfg: dict
    out_dir: Path
    model: nn.Module
    train_dataset: Dataset
    test_dataset: Dataset
    device: str | None
    resume: bool
    make_trainer: Callable[..., Any]
    eval_fn: Callable[[nn.Module], dict]
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None


class Stage(Protocol):
    """One step of training: ``run(ctx)`` returns a JSON-able summary."""

    name: str

    def run(self, ctx: StageContext) -> dict[str, Any]:
        ...


class SGDStage:
    """Fine-tunes the model with the iteration-based :class:`~visiontasks.engine.Trainer`.

    Always (re)entered on resume: the trainer continues from ``checkpoint_last.pt``, and when the
    schedule is already complete it only evaluates.

    Args:
        name: stage name in logs and ``stages.json``.
        evaluate: evaluate at the end (the last stage of a model does; an SGD stage followed by
            fitting stages does not, its network is not the final detector).
    """

    def __init__(self, name: str = "sgd", evaluate: bool = True) -> None:
        self.name = name
        self.evaluate = evaluate

    def run(self, ctx: StageContext) -> dict[str, Any]:
        trainer = ctx.make_trainer(eval_fn=ctx.eval_fn if self.evaluate else None)
        if ctx.resume and trainer.checkpoint_path.is_file():
            trainer.resume()
        threads, previous = ctx.extra.get("sgd_threads"), torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            metrics = trainer.train()
        finally:
            torch.set_num_threads(previous)
        if self.evaluate:
            ctx.metrics = metrics
        return {"iterations": trainer.iteration}


def model_stages(model: nn.Module) -> list[Any]:
    """The model's stages (``model.training_stages()``) or the single SGD stage."""
    fn = getattr(model, "training_stages", None)
    stages = list(fn()) if callable(fn) else [SGDStage()]
    names = [s.name for s in stages]
    if not stages or len(set(names)) != len(names):
        raise ValueError(f"a model's training stages need unique names, got {names}")
    return stages


class StageLog:
    """``stages.json``: per stage ``{"status": "running" | "done", "seconds", "summary"}``."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / STAGES_FILE
        self.state: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.state = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(self.path, f"unreadable stage log ({exc}); delete it to rerun every stage") from None
            if not isinstance(self.state, dict):
                raise InputError(self.path, "stage log must be a JSON object; delete it to rerun every stage")

    def done(self, name: str) -> bool:
        return self.state.get(name, {}).get("status") == "done"

    def mark(self, name: str, status: str, **info: Any) -> None:
        self.state[name] = {"status": status, **info}
        if is_main_process():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.state, indent=2, default=float))


def run_stages(stages: Sequence[Any], ctx: StageContext, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs ``stages`` in order; on resume, finished non-SGD stages are skipped.

    Returns:
        ``ctx.metrics`` after the last stage (``{}`` when no stage evaluated).
    """
    record = StageLog(ctx.out_dir)
    if not ctx.resume:
        record.state = {}
    for i, stage in enumerate(stages, 1):
        prefix = f"stage {i}/{len(stages)} ({stage.name})"
        if ctx.resume and record.done(stage.name) and not isinstance(stage, SGDStage):
            if is_main_process():
                log(f"{prefix}: done in an earlier run, skipped")
            continue
        if is_main_process() and len(stages) > 1:
            log(f"{prefix}: started")
        record.mark(stage.name, "running")
        start = time.perf_counter()
        summary = stage.run(ctx) or {}
        seconds = time.perf_counter() - start
        record.mark(stage.name, "done", seconds=round(seconds, 3), summary=summary)
        if is_main_process() and len(stages) > 1:
            log(f"{prefix}: done in {seconds:.1f} s")
    return ctx.metrics or {}
