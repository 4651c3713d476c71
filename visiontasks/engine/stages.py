"""Training as an explicit list of stages, each resumable and logged.

Most models train in one stage (SGD). A model may add stages after fine-tuning (e.g. caching
features, then fitting classifiers on them), so the engine runs a list instead of branching on
the model. A model declares its list with
``model.training_stages()`` (default: ``[SGDStage()]``); :func:`run_stages` runs them in order.

A stage is an object with a ``name`` and ``run(ctx) -> dict`` (a small JSON-able summary), and
it declares what the engine needs to know (:class:`Stage` holds the defaults), so the engine
asks the stages instead of knowing any model or stage by name:

- ``folders``: the run-directory folders it writes (they mark a folder as holding a run, and
  ``--overwrite`` removes them; ``stages.json`` records them, so an earlier run's are removed too);
- ``skip_when_done``: on ``--resume`` a stage that ``stages.json`` records as done is skipped
  (True), or entered again because it resumes inside (False: SGD continues from its checkpoint);
  a stage that was interrupted always runs again (it keeps partial work in its own files if it
  wants finer resumption);
- ``needs_trainer``: it asks ``ctx.make_trainer`` for the Trainer (built before the run
  directory changes, so a bad ``train:`` value stops the command first). A stage of its own SGD
  steps passes ``make_trainer(eval_fn, out_dir=, train_dataset=, forward_fn=, **train_overrides)``
  (each option defaults to the run's) and gets a Trainer built for them.

``stages.json`` is written atomically. Each stage logs its start and end on the console and in
``stages.json`` with its duration. After SIGTERM/SIGINT (:mod:`visiontasks.engine.preempt`) no
further stage starts; a stage stopped inside stays ``running`` and is entered again on resume.

Shape shorthand: none (orchestration only).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from visiontasks.engine.distributed import is_main_process
from visiontasks.engine.preempt import Preempted, stop_agreed
from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["Stage", "StageContext", "SGDStage", "train_resumed", "StageLog", "run_stages", "model_stages", "declared",
           "stage_folders", "recorded_folders"]

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


class Stage:
    """One step of training: ``run(ctx)`` returns a JSON-able summary.

    Subclasses set ``name`` and override :meth:`run`; the class attributes below are the
    declarations the engine reads (any object with ``name`` and ``run`` works: missing
    declarations take these defaults, see :func:`declared`).

    Attributes:
        name: the stage's name in logs and ``stages.json``.
        folders: run-directory folders (plain names) the stage writes.
        skip_when_done: skip the stage on ``--resume`` once ``stages.json`` records it done.
        needs_trainer: the stage calls ``ctx.make_trainer``.
    """

    name: str = "stage"
    folders: tuple[str, ...] = ()
    skip_when_done: bool = True
    needs_trainer: bool = False

    def run(self, ctx: StageContext) -> dict[str, Any]:
        raise NotImplementedError


def declared(stage: Any, key: str) -> Any:
    """A stage's declaration ``key`` (``folders``, ``skip_when_done``, ``needs_trainer``), else :class:`Stage`'s."""
    return getattr(stage, key, getattr(Stage, key))


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def stage_folders(stages: Sequence[Any]) -> list[str]:
    """The run-directory folders the stages declare, in order, without repeats.

    Raises:
        ValueError: a declared folder is not a plain name (no path separators, not ``.``/``..``).
    """
    out: list[str] = []
    for stage in stages:
        for name in declared(stage, "folders"):
            if not _plain_name(name):
                raise ValueError(f"stage {stage.name!r} declares folder {name!r}; folders must be plain names")
            if name not in out:
                out.append(name)
    return out


def recorded_folders(out_dir: str | Path) -> list[str]:
    """The folders an earlier run's stages declared (from ``out_dir/stages.json``; [] when unreadable).

    Only plain names are returned, so a tampered file cannot point ``--overwrite`` outside the run.
    """
    try:
        state = json.loads((Path(out_dir) / STAGES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = [n for v in (state.values() if isinstance(state, dict) else ()) if isinstance(v, dict)
             for n in (v.get("folders") or []) if _plain_name(n)]
    return list(dict.fromkeys(names))


def train_resumed(trainer: Any, ctx: StageContext) -> dict[str, Any]:
    """Runs ``trainer`` for a stage: resumed from its checkpoint on ``--resume`` when it has one, with
    ``ctx.extra["sgd_threads"]`` torch threads while it trains (restored after).

    Returns:
        ``trainer.train()``'s metrics.
    """
    if ctx.resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    threads, previous = ctx.extra.get("sgd_threads"), torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return trainer.train()
    finally:
        torch.set_num_threads(previous)


class SGDStage(Stage):
    """Fine-tunes the model with the iteration-based :class:`~visiontasks.engine.Trainer`.

    Always (re)entered on resume (``skip_when_done = False``): the trainer continues from
    ``checkpoint_last.pt``, and when the schedule is already complete it only evaluates.

    Args:
        name: stage name in logs and ``stages.json``.
        evaluate: evaluate at the end (the last stage of a model does; an SGD stage followed by
            fitting stages does not, its network is not the final detector).
    """

    skip_when_done = False
    needs_trainer = True

    def __init__(self, name: str = "sgd", evaluate: bool = True) -> None:
        self.name = name
        self.evaluate = evaluate

    def run(self, ctx: StageContext) -> dict[str, Any]:
        trainer = ctx.make_trainer(eval_fn=ctx.eval_fn if self.evaluate else None)
        metrics = train_resumed(trainer, ctx)
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


def run_stages(stages: Sequence[Any], ctx: StageContext, log: Callable[[str], None] = print,
               total: int | None = None) -> dict[str, Any]:
    """Runs ``stages`` in order; on resume, finished stages that declare ``skip_when_done`` are skipped.

    Args:
        stages: the stages to run now.
        ctx: what they share.
        log: where the one-line stage messages go.
        total: the model's number of stages, when ``stages`` is its first few (``--until``), so
            the messages count "stage 1/4", not "1/2".

    Returns:
        ``ctx.metrics`` after the last stage (``{}`` when no stage evaluated).
    """
    record = StageLog(ctx.out_dir)
    if not ctx.resume:
        record.state = {}
    count = total if total is not None else len(stages)
    for i, stage in enumerate(stages, 1):
        prefix = f"stage {i}/{count} ({stage.name})"
        if ctx.resume and record.done(stage.name) and declared(stage, "skip_when_done"):
            if is_main_process():
                log(f"{prefix}: done in an earlier run, skipped")
            continue
        signum = stop_agreed()  # SIGTERM/SIGINT (engine/preempt.py): stop between stages
        if signum is not None:
            raise Preempted(signum, f"stages.json records the finished stages; stage {i}/{count} "
                                    f"({stage.name}) not started")
        if is_main_process() and count > 1:
            log(f"{prefix}: started")
        folders = stage_folders([stage])
        record.mark(stage.name, "running", folders=folders)
        start = time.perf_counter()
        summary = stage.run(ctx) or {}
        seconds = time.perf_counter() - start
        record.mark(stage.name, "done", folders=folders, seconds=round(seconds, 3), summary=summary)
        if is_main_process() and count > 1:
            log(f"{prefix}: done in {seconds:.1f} s")
    return ctx.metrics or {}
