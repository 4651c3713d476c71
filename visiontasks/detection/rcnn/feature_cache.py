"""R-CNN's ``features`` stage: fc7 and pool5 of every training proposal and ground-truth box, cached.

The stage after fine-tuning (``RCNN.training_stages()``; the stages and their files are tabled in
``stages.py``). It writes ``features/manifest.json`` (the settings) and ``features/<id>.npz`` per
image (``features.py``: boxes, labels, overlaps, fc7, pool5 in float16) and resumes per image: an
image whose file exists is skipped. The features come from the training split with the
evaluation transforms (no flip), the proposals cleaned as at test time (``model.proposer``), and
all the ground truth, difficult objects included (``roidb_from_voc.m``; ``features.target_record``).

Under DDP (``torchrun``, one machine or several) the cache is split over the ranks: rank 0
clears, checks or creates ``features/manifest.json`` (the engine's ``stages.json`` records the
stage done only after every rank has finished), then rank ``r`` of ``W`` caches the images
``r, r + W, …`` of the split that have no file yet (so each rank resumes its own share), and all
ranks meet at a barrier. In a job array each task runs ``tools/train_det.py --shard I/N`` on the
fine-tuned run instead (``shards.py``, with :func:`open_feature_cache` and :func:`cache_images`):
the same split and files, the manifest created atomically by the first task; the stage then runs
on ``--resume`` and finds the files. The files are those of one process: each depends only on
its image and the (identical, DDP-synchronised) weights.

Shape shorthand: none here (the arrays are described in ``features.py``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from visiontasks.detection.rcnn.features import (features_path, read_features_manifest, target_record,
                                                 write_features_manifest, write_image_features)
from visiontasks.engine import distributed as D
from visiontasks.engine.preempt import polled
from visiontasks.engine.stages import Stage
from visiontasks.errors import InputError

__all__ = ["FeatureCacheStage", "open_feature_cache", "cache_images", "fresh_folder", "kept_message", "SHARDS"]

#: ``features/shards/<I>-of-<N>/``: the lock of a job-array task (``shards.py``), removed when the stage ends.
SHARDS = "shards"


def fresh_folder(folder: Path, resume: bool) -> None:
    """Creates a stage's ``folder``, first deleting it unless ``resume``."""
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def kept_message(folder: Path, what: str, total: int) -> Callable[[], str]:
    """The message of a stop by SIGTERM/SIGINT (engine/preempt.py): what ``folder`` holds."""
    return lambda: f"{what}: {sum(1 for p in folder.glob('*.npz'))} of {total} written in {folder}"


def _cache_dataset(cfg: dict, model: torch.nn.Module) -> Any:
    """The training split with evaluation transforms (no flip) and its proposals."""
    from visiontasks.data import build_dataset

    data_cfg = cfg["data"]
    return build_dataset(data_cfg, data_cfg["train_split"], train=False, task="detection",
                         proposal_params=model.proposal_params, make_proposals=model.make_proposals)


def _dataset_ids(dataset: Any) -> list[str]:
    ids = getattr(dataset, "ids", None)
    if ids is None:
        ids = [dataset[i][1]["image_id"] for i in range(len(dataset))]
    return [str(i) for i in ids]


def _device(ctx) -> torch.device:
    from visiontasks.engine.common import resolve_device

    return resolve_device(ctx.device)


def open_feature_cache(cfg: dict, model: torch.nn.Module, folder: Path) -> tuple[Any, list[str]]:
    """Reads the cache's dataset and creates ``folder/manifest.json`` (the settings) or checks it.

    The manifest is created atomically (written beside it, then hard-linked into place, which
    fails when it exists), so of several processes starting at once (the tasks of a job array)
    exactly one creates it and every other one checks its settings against it.

    Returns:
        The dataset (training split, evaluation transforms) and its image ids.

    Raises:
        InputError: the folder's manifest holds other settings (naming the differing keys).
    """
    dataset = _cache_dataset(cfg, model)
    ids = _dataset_ids(dataset)
    head = model.roi_head
    info = {"image_ids": ids, "classes": list(dataset.classes), "fc7_dim": head.fc7_dim,
            "pool5_dim": head.pool5_dim, "crop_size": getattr(head.pooler, "crop_size", None),
            "context_pad": getattr(head.pooler, "context_pad", None),
            "scales": list(getattr(model.backbone, "scales", [])) or None,
            "proposal_params": model.proposal_params,
            "proposal_min_size": model.proposer.min_size, "max_proposals": model.proposer.max_proposals,
            "difficult": "ground truth", "dtype": "float16",
            # a bf16 cache (model.feature_precision) is not resumed as an fp32 one; fp32 manifests keep their keys
            **({"precision": model.feature_precision} if getattr(model, "feature_precision", "fp32") != "fp32" else {})}
    manifest = folder / "manifest.json"
    folder.mkdir(parents=True, exist_ok=True)
    if not manifest.is_file():
        with tempfile.TemporaryDirectory(dir=folder, prefix=".manifest-") as tmp:
            try:
                os.link(write_features_manifest(tmp, info), manifest)
            except FileExistsError:  # another process created it first: checked below
                pass
    stored = read_features_manifest(folder)
    diff = sorted(k for k in info if stored.get(k) != json.loads(json.dumps(info[k])))
    if stored.get("precision", "fp32") != info.get("precision", "fp32") and "precision" not in diff:
        diff.append("precision")  # an fp32 run finding a bf16 cache (its manifest has the key, ours not)
    if diff:
        raise InputError(manifest, f"feature cache made with other settings ({', '.join(diff)}); delete "
                                   f"{folder} or start a fresh run")
    return dataset, ids


def cache_images(model: torch.nn.Module, dataset: Any, todo: list[int], folder: Path, device: torch.device,
                 num_workers: int = 0, progress: bool = True, kept: Callable[[], str] = str) -> int:
    """Writes ``folder/<id>.npz`` of the images ``todo`` (indices into ``dataset``) with ``model`` in eval mode.

    Each file depends only on its image and the weights, so any split of the images over
    processes writes the files of one. Stops between images after SIGTERM/SIGINT (``polled``).

    Returns:
        The number of rows (ground-truth boxes and proposals) written.
    """
    from visiontasks.data import collate_fn

    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(Subset(dataset, todo), batch_size=1, shuffle=False, collate_fn=collate_fn,
                        num_workers=num_workers)
    rows = 0
    try:
        for images, targets in polled(tqdm(loader, total=len(todo), desc="features", leave=False,
                                           disable=not progress), kept):
            target = targets[0]  # difficult objects stay ground truth (roidb_from_voc.m)
            record = target_record(target, partial(model.extract, images[0].to(device)), len(dataset.classes))
            write_image_features(folder, str(target["image_id"]), record)
            rows += len(record["boxes"])
    finally:
        model.train(was_training)
    return rows


class FeatureCacheStage(Stage):
    """Caches fc7 and pool5 of every training proposal and ground-truth box (see the module docstring)."""

    folders = ("features",)

    def __init__(self, name: str = "features") -> None:
        self.name = name

    def run(self, ctx) -> dict[str, Any]:
        rank, world = D.get_rank(), D.get_world_size()
        folder = Path(ctx.out_dir) / "features"
        error = None
        if rank == 0:
            try:
                if not ctx.resume:  # new features make the fitted models of an earlier run stale
                    for later in ("svm", "bbox_reg"):
                        shutil.rmtree(Path(ctx.out_dir) / later, ignore_errors=True)
                fresh_folder(folder, ctx.resume)
                dataset, ids = open_feature_cache(ctx.cfg, ctx.model, folder)
            except InputError as exc:  # every rank stops with the same line (no rank left at the barrier)
                error = (exc.path, exc.problem)
        error = _from_rank0(error)
        if error is not None:
            raise InputError(*error)
        if rank != 0:
            dataset = _cache_dataset(ctx.cfg, ctx.model)
            ids = _dataset_ids(dataset)
        todo = [i for i in range(rank, len(ids), world) if not features_path(folder, ids[i]).is_file()]
        rows = cache_images(ctx.model, dataset, todo, folder, _device(ctx),
                            num_workers=int(ctx.cfg["data"].get("num_workers", 0)), progress=rank == 0,
                            kept=kept_message(folder, "feature cache (images)", len(ids)))
        counts = D.all_reduce_dict({"computed": torch.tensor(float(len(todo))), "rows": torch.tensor(float(rows))})
        D.barrier()  # the fitting stages (rank 0) read every rank's files
        if rank == 0:  # the job-array tasks' locks (shards.py), all finished
            shutil.rmtree(folder / SHARDS, ignore_errors=True)
        size = sum(p.stat().st_size for p in folder.glob("*.npz"))
        return {"images": len(ids), "computed": round(counts["computed"] * world),
                "rows_computed": round(counts["rows"] * world), "megabytes": round(size / 2**20, 3),
                "bytes_per_image": round(size / max(len(ids), 1)), "ranks": world}


def _from_rank0(value: Any) -> Any:
    """``value`` of rank 0 on every rank (itself in a single process)."""
    if not D.is_dist():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
