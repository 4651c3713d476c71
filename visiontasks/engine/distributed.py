"""Thin helpers over ``torch.distributed`` for runs launched with ``torchrun``.

``torchrun --nproc_per_node N tools/train_det.py ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` then joins the
process group (NCCL on CUDA, gloo on the CPU) and the trainer wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`. Without those variables everything runs in
one process and these helpers are no-ops.

Rendezvous: by default the ranks meet at ``MASTER_ADDR:MASTER_PORT`` (``env://``; under
``torchrun --standalone`` the agent holds that port open, so nothing can take it in between).
Setting ``VISIONTASKS_DIST_INIT_METHOD`` (e.g. ``file:///shared/run/rendezvous``) uses that init
method instead: a ``file://`` one is a :class:`torch.distributed.FileStore`, which needs no port at
all (the tests use it; also handy on a cluster with a shared file system and no free port known).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "is_dist", "get_rank", "get_world_size", "is_main_process", "barrier",
           "all_reduce_dict", "cleanup", "DIST_TIMEOUT"]

# Rank 0 evaluates alone while the other ranks wait: allow a long evaluation.
DIST_TIMEOUT = datetime.timedelta(hours=2)


def is_dist() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    """True on rank 0 (the process that logs and writes files)."""
    return get_rank() == 0


def init_distributed() -> tuple[int, int, int]:
    """Joins the process group described by torchrun's environment, if any (idempotent).

    Returns:
        ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` when not launched by torchrun (or
        launched with a single process).
    """
    if is_dist():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if "RANK" not in os.environ or world <= 1:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    init_method = os.environ.get("VISIONTASKS_DIST_INIT_METHOD") or None  # None: env:// (MASTER_ADDR/PORT)
    dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=DIST_TIMEOUT)
    return rank, world, local_rank


def barrier() -> None:
    """Waits for every rank (no-op in a single process)."""
    if is_dist():
        dist.barrier()


def all_reduce_dict(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Averages scalar tensors over the ranks (for logging); returns Python floats.

    Args:
        values: name -> scalar tensor (same names on every rank).

    Returns:
        name -> mean over ranks, in the order of ``values``.
    """
    if not values:
        return {}
    names = list(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in sorted(names)])
    if is_dist():
        if dist.get_backend() == "nccl" and not stacked.is_cuda:
            stacked = stacked.cuda()
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / dist.get_world_size()
    reduced = dict(zip(sorted(names), stacked.cpu().tolist()))
    return {k: reduced[k] for k in names}


def cleanup() -> None:
    """Waits for every rank, then leaves the process group (no-op in a single process).

    Called on the success path only (an error leaves the group to the process's exit). The
    barrier first: a rank that finished its part (rank 1 returns from the last checkpoint's
    RNG gather while rank 0 still writes the file) must not shut its connections down while a
    peer is still using the group; a gloo rank that did so once died of SIGABRT at exit
    ("terminate called without an active exception", CI, issue 26's DDP test), and torchrun
    would then report a finished run as failed.
    """
    if is_dist():
        dist.barrier()
        dist.destroy_process_group()
