"""R-CNN's feature stage as a job array: ``tools/train_det.py --config C --out RUN --shard I/N``.

Under ``torchrun`` the ranks split the feature cache themselves (``feature_cache.py``). On a cluster
whose GPUs come as independent jobs (a SLURM job array), each task runs
:func:`cache_feature_shard` on the shared run directory instead:

1. it refuses a run whose stages before ``features`` (R-CNN: ``finetune``) are not recorded done
   in ``stages.json`` (fine-tune first: ``--until finetune``), and a run whose checkpoint does not
   fit the config (:func:`~visiontasks.engine.rundir.check_resume`);
2. it loads the fine-tuned weights from ``checkpoint_last.pt`` (read only) and takes the shard's
   own lock, ``features/shards/<I>-of-<N>/.lock`` (a second process on the same shard stops at
   once; the tasks of the array do not wait on each other or on the run's ``.lock``);
3. it creates ``features/manifest.json`` atomically or checks it
   (:func:`~visiontasks.detection.rcnn.feature_cache.open_feature_cache`: of tasks starting at once
   exactly one creates it, the others compare their settings with it);
4. it caches the images ``I, I + N, I + 2N, …`` of the split that have no file yet (so a killed
   task resumes when rerun) and stops: it writes nothing else (no ``stages.json``, no fitting
   stage on a partial cache, no evaluation).

A last run, ``--resume`` without ``--shard``, enters the ``features`` stage, finds every file
(computing any still missing), removes ``features/shards/`` and goes on with ``svm`` and
``bbox_reg``. The files are those of one process: each depends only on its image and the weights.

Shape shorthand: none (files in, files out).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from visiontasks.errors import InputError

__all__ = ["cache_feature_shard"]


def _refuse_bad_mode(overwrite: bool) -> None:
    if overwrite:
        raise InputError("--shard", "cannot be combined with --overwrite (it would delete the other tasks' files); "
                                    "start the run over once, before the array")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("--shard", "a job-array task runs one process; under torchrun the ranks split the "
                                    "feature cache themselves (drop --shard)")


def cache_feature_shard(cfg: dict, out: str | os.PathLike[str], shard: str, device: str | None = None,
                        overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Caches shard ``I`` of ``N`` of a run's R-CNN features (see the module docstring).

    Args:
        cfg: the run's resolved config.
        out: the run directory (fine-tuned: the stages before ``features`` done).
        shard: ``"I/N"`` with ``0 <= I < N``.
        device: "cpu", "cuda", "cuda:1"… (default: CUDA when available).
        overwrite: ``--overwrite`` was given (refused).
        log: where the summary line goes.

    Returns:
        ``{"shard", "images", "computed", "skipped", "rows_computed"}`` (``computed`` 0 once the
        stage is recorded done).

    Raises:
        InputError: a bad ``shard`` (naming ``--shard``), a model without a feature stage, a run
            not fine-tuned, or a checkpoint or feature cache of other settings.
    """
    import torch

    from visiontasks.data import dataset_classes
    from visiontasks.detection.proposals.shards import parse_shard
    from visiontasks.detection.rcnn.features import features_path
    from visiontasks.detection.rcnn.feature_cache import SHARDS, FeatureCacheStage, cache_images, open_feature_cache
    from visiontasks.device import check_device
    from visiontasks.engine.checkpoint import load_checkpoint
    from visiontasks.engine.common import resolve_device
    from visiontasks.engine.preempt import handling_signals
    from visiontasks.engine.rundir import RunLock, check_resume
    from visiontasks.engine.run import build_model, check_proposals
    from visiontasks.engine.stages import STAGES_FILE, StageLog, model_stages
    from visiontasks.precision import fp32_boundaries, prefers_channels_last, resolve_amp

    index, count = parse_shard(shard)
    _refuse_bad_mode(overwrite)
    check_device(device)
    out = Path(out)
    classes = list(dataset_classes(cfg["data"]))
    model = build_model(cfg, len(classes) + 1)
    check_proposals(cfg, model)
    stages = model_stages(model)
    k = next((i for i, s in enumerate(stages) if isinstance(s, FeatureCacheStage)), None)
    if k is None:
        raise InputError("--shard", f"model {cfg['model']['name']!r} has no feature-cache stage (--shard splits "
                                    "R-CNN's; tools/propose.py --shard splits selective search)")
    record = StageLog(out)
    unfinished = [s.name for s in stages[:k] if not record.done(s.name)]
    if unfinished:
        raise InputError(out / STAGES_FILE, f"stage {unfinished[0]!r} has not finished in this run: run "
                                            f"tools/train_det.py with --until {stages[k - 1].name} first")
    name = f"shard {index}/{count}"
    if record.done(stages[k].name):
        log(f"{name}: the {stages[k].name} stage is done in {out}; nothing to cache")
        return {"shard": [index, count], "images": None, "computed": 0, "skipped": None, "rows_computed": 0}
    check_resume(out, cfg, classes)
    ckpt = out / "checkpoint_last.pt"
    try:
        model.load_state_dict(load_checkpoint(ckpt)["model"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(ckpt, f"does not hold this model's weights: {str(exc).splitlines()[0]}") from None
    dev = resolve_device(device)
    if resolve_amp(cfg["train"].get("amp"), dev) is not None:
        # As run_training leaves the model for the stages: its Trainer (built first) prepares it for
        # train.amp (engine/trainer.py: fp32_boundaries, channels-last), which changes the rounding of
        # the features; without this the files would differ from one process's in the last bits.
        fp32_boundaries(model)
        if prefers_channels_last(model):
            model.to(memory_format=torch.channels_last)
    folder = out / "features"
    lock_dir = folder / SHARDS / f"{index}-of-{count}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg["train"]["seed"])
    with RunLock(lock_dir), handling_signals():
        dataset, ids = open_feature_cache(cfg, model, folder)
        mine = range(index, len(ids), count)
        todo = [i for i in mine if not features_path(folder, ids[i]).is_file()]
        rows = cache_images(model, dataset, todo, folder, dev,
                            num_workers=int(cfg["data"].get("num_workers", 0)),
                            kept=lambda: f"{name}: {sum(features_path(folder, ids[i]).is_file() for i in mine)} "
                                         f"of {len(mine)} images cached in {folder}")
    log(f"{name}: {len(todo)} images cached, {len(mine) - len(todo)} skipped (already done), {len(ids)} in the "
        f"split; when every task has finished, run the same command with --resume instead of --shard")
    return {"shard": [index, count], "images": len(mine), "computed": len(todo), "skipped": len(mine) - len(todo),
            "rows_computed": rows}
