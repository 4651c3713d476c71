"""Precomputing proposals for a VOC-layout split: what ``tools/propose.py`` and ``data.proposals:
auto`` run.

One file per image in the proposal folder (:mod:`visiontasks.data.proposals`), written atomically by worker processes
with a tqdm bar; images whose file exists are skipped (resumable); the manifest is written first
and a folder made with other parameters is refused (or, with ``overwrite``, cleared);
``timing.json`` records seconds of proposing per image. With ``shard=(I, N)`` only every N-th image
from the I-th is proposed and the manifest waits for :func:`~visiontasks.detection.proposals.shards.merge_shards`
(``shards.py``: ``--shard I/N`` and ``torchrun``).

Shape shorthand: none (files in, files out).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from visiontasks.data.proposals import (MANIFEST, TIMING, check_params, proposals_path, read_manifest, read_timing,
                                        write_manifest, write_proposals, write_timing)
from visiontasks.data.voc import read_image, read_split_ids
from visiontasks.detection.proposals.selective_search import propose
from visiontasks.detection.proposals.shards import prepare_shard, shard_ids
from visiontasks.errors import InputError

__all__ = ["precompute_proposals", "read_split_ids", "prepare_folder", "PrecomputeSummary"]

FLUSH_EVERY_S = 30.0


@dataclass
class PrecomputeSummary:
    """What a run did: images proposed / skipped, boxes, seconds of proposing, ids with no boxes."""

    total: int
    done: int
    skipped: int
    boxes: int
    seconds: float
    wall: float
    empty: list[str]


def prepare_folder(out: str | Path, params: Mapping[str, Any], overwrite: bool = False,
                   hint: str = "pass --overwrite to delete them and start over, or choose another --out") -> None:
    """Writes the manifest, refusing (or, with ``overwrite``, clearing) a folder made otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "proposals folder exists and is not a folder")
    if overwrite and out.is_dir():
        for path in [*out.glob("*.npy"), out / TIMING, out / MANIFEST]:
            path.unlink(missing_ok=True)
    if (out / MANIFEST).exists():
        read_manifest(out)
        check_params(out, dict(params), asker="this run", hint=hint)
        return
    if out.is_dir() and any(out.glob("*.npy")):
        raise InputError(out, "holds .npy files but no manifest.json, so their parameters are unknown; "
                              "delete them or choose another folder")
    write_manifest(out, dict(params))


def _init_worker() -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _work(job: tuple[str, str, str, dict]) -> tuple[str, int, float, tuple[str, str] | None]:
    """Proposes one image and writes its file: ``(id, boxes, seconds, (path, problem) or None)``."""
    image_id, image_path, out, params = job
    try:
        rgb = read_image(image_path).permute(1, 2, 0).numpy()
        start = time.perf_counter()
        boxes = propose(rgb, params)
        seconds = time.perf_counter() - start
        write_proposals(out, image_id, boxes)
    except InputError as exc:  # InputError does not survive pickling back from a worker
        return image_id, 0, 0.0, (str(exc.path), exc.problem)
    return image_id, len(boxes), seconds, None


def precompute_proposals(root: str | Path, split: str, params: Mapping[str, Any], out: str | Path,
                         workers: int = 1, overwrite: bool = False, progress: bool = True,
                         hint: str = "pass --overwrite to delete them and start over, or choose another --out",
                         shard: tuple[int, int] | None = None) -> PrecomputeSummary:
    """Proposes every image of a split that has no file in ``out`` yet.

    Args:
        root: VOC-layout folder.
        split: ``ImageSets/Main/<split>.txt``.
        params: canonical proposal parameters (``proposal_params(...)``).
        out: the proposals folder.
        workers: worker processes (1: in this process).
        overwrite: clear a folder made with other parameters instead of refusing it.
        progress: show a tqdm bar.
        hint: how to resolve a parameter mismatch (appended to that error).
        shard: ``(I, N)``: propose only shard I of N (``shards.py``); the folder's manifest is then
            written by ``merge_shards`` once all shards are done. ``overwrite`` is refused with it.

    Returns:
        A :class:`PrecomputeSummary` (of this shard's images).
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    root, out = Path(root), Path(out)
    ids = read_split_ids(root, split)
    timing_dir = out
    if shard is None:
        prepare_folder(out, params, overwrite, hint)
    else:
        if overwrite:
            raise ValueError("--overwrite with a shard would delete the other shards' files; clear the folder "
                             "once before starting the shards")
        timing_dir = prepare_shard(out, params, *shard)
        ids = shard_ids(ids, *shard)
    todo = [i for i in ids if not proposals_path(out, i).is_file()]
    timing = {k: v for k, v in read_timing(timing_dir).items() if proposals_path(out, k).is_file()}
    jobs = [(i, str(root / "JPEGImages" / f"{i}.jpg"), str(out), dict(params)) for i in todo]
    start = time.perf_counter()
    done, boxes, empty = 0, 0, []
    last_flush = time.monotonic()
    executor = None
    if workers > 1 and jobs:
        # Not fork: a process that already ran OpenCV's thread pool (a test, a notebook, predict()) forks
        # its pool's locked mutex, and the child hangs in cv2.setNumThreads (seen in the slow suite).
        # forkserver on Linux: one clean server imports this module once and forks the workers from it.
        if sys.platform.startswith("linux"):
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
        else:
            context = multiprocessing.get_context("spawn")
        executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
        results = executor.map(_work, jobs, chunksize=1)
    else:
        results = map(_work, jobs)
    try:
        with tqdm(results, total=len(jobs), desc=f"proposals {split}", unit="img", disable=not progress) as bar:
            for image_id, n, seconds, error in bar:
                if error is not None:
                    raise InputError(*error)
                done, boxes = done + 1, boxes + n
                timing[image_id] = seconds
                if n == 0:
                    empty.append(image_id)
                if time.monotonic() - last_flush > FLUSH_EVERY_S:
                    write_timing(timing_dir, timing)
                    last_flush = time.monotonic()
    finally:
        write_timing(timing_dir, timing)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return PrecomputeSummary(total=len(ids), done=done, skipped=len(ids) - len(todo), boxes=boxes,
                             seconds=sum(timing[i] for i in todo), wall=time.perf_counter() - start, empty=empty)
