"""From a resolved config to a trained, evaluated run directory (what the train tools call).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint_last.pt``, ``log.csv``,
``loss.png``, ``tb/`` (TensorBoard), ``stages.json`` (the training stages and their state, see
:mod:`visiontasks.engine.stages`) and, after the final evaluation, ``metrics.json``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from visiontasks.config import dump_config
from visiontasks.data import build_dataset, collate_fn, dataset_classes
from visiontasks.data.check import check_split, split_source
from visiontasks.device import check_device
from visiontasks.engine.distributed import init_distributed, is_dist, is_main_process
from visiontasks.engine.evaluate import evaluate_detection, evaluate_segmentation
from visiontasks.engine.preempt import handling_signals
from visiontasks.engine.rundir import RunLock, check_out_dir, check_resume, open_run_dir
from visiontasks.engine.stages import (StageContext, declared, model_stages, recorded_folders, run_stages,
                                       stage_folders)
from visiontasks.engine.trainer import Trainer
from visiontasks.errors import InputError
from visiontasks.evaluation.report import format_metrics, public_metrics, undefined_metrics, write_json
from visiontasks.registry import get_model
from visiontasks.tasks import check_metric

__all__ = ["build_model", "run_training", "write_json", "segmentation_forward", "format_metrics", "TASK_ENGINE",
           "check_proposals", "undefined_metrics"]


def build_model(cfg: dict, num_classes: int) -> torch.nn.Module:
    """Builds ``cfg["model"]``, checking ``num_classes`` (background included) against the data."""
    kwargs = dict(cfg["model"])
    name = kwargs.pop("name")
    if kwargs.get("num_classes") is None:
        kwargs["num_classes"] = num_classes
    elif kwargs["num_classes"] != num_classes:
        raise ValueError(f"model.num_classes={kwargs['num_classes']} but the dataset has {num_classes - 1} "
                         f"classes (+1 background = {num_classes}); fix model.num_classes or data.classes")
    try:
        return get_model(name, **kwargs)
    except TypeError as exc:  # a config value of the wrong kind reaching the builder
        raise ValueError(f"the model section does not fit {name!r}: {exc}".split("\n")[0]) from None


def segmentation_forward(model: torch.nn.Module, images: list[torch.Tensor], targets: list[dict]) -> dict:
    """Training step of a segmenter: per-pixel cross-entropy, 255 ignored (same-size crops are stacked)."""
    logits = model(torch.stack(images))["out"]
    masks = torch.stack([t["mask"] for t in targets])
    return {"loss_ce": F.cross_entropy(logits, masks, ignore_index=255)}


#: How each task trains and is scored: (forward_fn for the Trainer, evaluator).
TASK_ENGINE: dict[str, tuple[Callable | None, Callable]] = {
    "detection": (None, evaluate_detection),  # None: the Trainer's default_forward (the model's loss dict)
    "segmentation": (segmentation_forward, evaluate_segmentation),
}


def check_proposals(cfg: dict, model: torch.nn.Module) -> None:
    """``data.proposals`` must be set exactly when the model is fed precomputed proposals."""
    data_cfg = cfg["data"]
    needs = bool(getattr(model, "needs_proposals", False))
    given = bool(data_cfg.get("proposals") or data_cfg.get("test_proposals"))
    name = cfg["model"]["name"]
    if needs and not data_cfg.get("proposals"):
        raise ValueError(f"model {name!r} is fed precomputed proposals: set data.proposals to a directory made by "
                         f"tools/propose.py (with {model.proposal_params})")
    if given and not needs:
        raise ValueError(f"data.proposals is set but model {name!r} makes its own proposals; remove data.proposals")


def _guard_run_dir(out: Path, resume: bool, overwrite: bool, cfg: dict, classes: list[str],
                   folders: list[str]) -> RunLock | None:
    """Rank 0 checks the resume and locks the run directory; under DDP the other ranks learn its verdict."""
    lock, error = None, None
    if is_main_process():
        try:
            if resume:
                check_resume(out, cfg, classes)
            lock = open_run_dir(out, resume=resume, overwrite=overwrite, folders=folders)
        except (InputError, ValueError) as exc:
            error = exc
    if is_dist():
        import torch.distributed as dist

        box = [str(error) if error is not None else None]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            raise ValueError(box[0])
    if error is not None:
        raise error
    return lock


def run_training(cfg: dict, out_dir: str | os.PathLike[str], resume: bool = False,
                 device: str | None = None, overwrite: bool = False, until: str | None = None) -> dict:
    """Trains ``cfg`` into ``out_dir`` through the model's training stages and evaluates on the test split.

    Nothing in ``out_dir`` changes until the command is known to be valid: the device, the
    datasets (and, with ``data.check``, every image header), the model, the trainer's arguments
    and, on resume, the checkpoint's compatibility are checked first; then the run directory is
    locked (:func:`visiontasks.engine.rundir.open_run_dir`) and ``config.yaml`` written.

    Args:
        cfg: a resolved config (``visiontasks.config.load_config``).
        out_dir: the run directory.
        resume: continue from ``out_dir/checkpoint_last.pt`` (finished fitting stages are skipped).
        device: "cpu", "cuda", "cuda:1"…; default CUDA when available. Under torchrun each
            process takes its LOCAL_RANK's GPU.
        overwrite: delete an earlier run in ``out_dir`` (without it, and without ``resume``, a
            folder holding a run is refused).
        until: stop after the training stage of this name (no later stage, no evaluation, no
            ``metrics.json``; returns ``{}``); ``resume`` continues (e.g. after R-CNN's ``features``
            were cached by a job array, docs/DISTRIBUTED.md).

    Returns:
        The final metrics (as written to ``metrics.json``).

    Raises:
        Preempted: SIGTERM/SIGINT stopped training at a step boundary after writing its state
            (:mod:`visiontasks.engine.preempt`); ``resume=True`` continues it.
    """
    task = cfg["task"]
    forward_fn, evaluate = TASK_ENGINE[task]
    metric = check_metric(task, cfg["eval"].get("metric"))
    out = Path(out_dir)
    check_device(device)
    check_out_dir(out)
    rank, world, local_rank = init_distributed()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    data_cfg = cfg["data"]
    sgd_threads = None
    if torch.device(device).type == "cpu" and data_cfg["num_workers"] > 0:
        # Leave cores to the loader workers: intra-op threads spinning against them cost 2.5x on 2 cores.
        # Only while SGD runs with workers: fitting stages and the final evaluation get every core.
        sgd_threads = max(1, (os.cpu_count() or 1) // world - data_cfg["num_workers"])
    classes = list(dataset_classes(data_cfg))
    torch.manual_seed(cfg["train"]["seed"])
    model = build_model(cfg, len(classes) + 1)
    check_proposals(cfg, model)
    params = getattr(model, "proposal_params", None)
    make = getattr(model, "make_proposals", None) if params is not None else None  # data.proposals: auto
    train_ds = build_dataset(data_cfg, data_cfg["train_split"], train=True, task=task, proposal_params=params,
                             make_proposals=make)
    test_ds = build_dataset(data_cfg, data_cfg["test_split"], train=False, task=task, proposal_params=params,
                            make_proposals=make)
    for ds, split in ((train_ds, data_cfg["train_split"]), (test_ds, data_cfg["test_split"])):
        if len(ds) == 0:
            raise InputError(split_source(ds), f"split {split!r} has no images")
        if data_cfg.get("check", True):
            check_split(ds, split)

    def eval_fn(m: torch.nn.Module) -> dict:
        return evaluate(m, test_ds, metric=metric, device=device)

    def build_trainer(eval_fn: Callable | None, out_dir: Path | None = None, train_dataset=None,
                      forward_fn: Callable | None = forward_fn, **train) -> Trainer:
        return Trainer(model, train_ds if train_dataset is None else train_dataset, collate_fn, out_dir or out,
                       **{**cfg["train"], **train}, num_workers=data_cfg["num_workers"], device=device,
                       eval_fn=eval_fn, forward_fn=forward_fn, config=cfg, meta={"classes": classes, "task": task})

    # Built now so that a bad train: value stops the command before the run directory changes;
    # the first stage asking for a trainer gets this one.
    stages = model_stages(model)
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise InputError("--until", f"no stage {until!r}; this model's stages are {', '.join(names)}")
    stop = names.index(until) + 1 if until is not None else len(stages)
    first = [build_trainer(None)] if any(declared(s, "needs_trainer") for s in stages) else []

    def make_trainer(eval_fn: Callable | None, **options) -> Trainer:
        # options (a stage of several SGD steps): out_dir, train_dataset, forward_fn, train: overrides
        if first and not options:
            trainer = first.pop()
            trainer.eval_fn = eval_fn
            return trainer
        return build_trainer(eval_fn, **options)

    # the folders this model's stages write, and those an earlier run in ``out`` recorded (--overwrite removes both)
    folders = list(dict.fromkeys([*stage_folders(stages), *recorded_folders(out)]))
    lock = _guard_run_dir(out, resume, overwrite, cfg, classes, folders)
    try:
        if is_main_process():
            dump_config(cfg, out / "config.yaml")
        ctx = StageContext(cfg=cfg, out_dir=out, model=model, train_dataset=train_ds, test_dataset=test_ds,
                           device=device, resume=resume, make_trainer=make_trainer, eval_fn=eval_fn,
                           extra={"sgd_threads": sgd_threads})
        with handling_signals():  # SIGTERM/SIGINT: the stages stop at a step boundary (engine/preempt.py)
            run_stages(stages[:stop], ctx, total=len(stages))
            if stop < len(stages):  # --until: the later stages and the evaluation are for --resume
                return {}
            metrics = ctx.metrics if ctx.metrics is not None else eval_fn(model.eval())
            result = public_metrics(metrics)
            if is_main_process():
                write_json(result, out / "metrics.json")
                curves = metrics.get("curves")
                if curves is not None:
                    from visiontasks.evaluation import plot_pr_curves

                    plot_pr_curves(curves, classes, out / "pr_curves.png")
    finally:
        if lock is not None:
            lock.release()
    return result
