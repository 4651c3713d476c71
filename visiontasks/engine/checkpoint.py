"""Crash-safe checkpoints that load without executing code, and RNG state capture.

A training checkpoint is a dict (see :meth:`visiontasks.engine.trainer.Trainer.state_dict`):

    model       state dict of the unwrapped model (never DDP's ``module.`` prefix)
    optimizer   optimizer state dict           scheduler   LR scheduler state dict
    scaler      GradScaler state dict ({} without AMP)
    iteration   iterations completed           rng         one RNG state per rank (see below)
    logger      the log window being averaged  config      the resolved config dict (or None)
    meta        what the caller passed (class names, task …)

Everything in it is a tensor, a number, a string, a list, a tuple, a dict or None, so it loads
with ``torch.load(weights_only=True)``: a file crafted to run code when unpickled is refused.
"""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Writes ``state`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is fsync'ed, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows): a crash at any point leaves either
    the previous checkpoint or the new one under ``path``, never a partial file.

    Args:
        path: destination file (its folder is created if needed).
        state: the dict to save.

    Returns:
        ``path`` as a Path.
    """
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(state, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint` (or any weights-only ``torch.save`` dict).

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go (default the CPU).
        mmap: map the tensors' storage from the file instead of reading it (for a quick look at
            a large checkpoint's config and metadata).

    Returns:
        The checkpoint dict.

    Raises:
        InputError: the file is missing, truncated, corrupt, not a torch file, holds objects
            other than tensors/containers/numbers (e.g. a pickle that would run code), or is not
            a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found" if not path.exists() else "checkpoint is not a file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise InputError(path, "refused to load: it holds objects other than tensors, numbers and containers "
                               f"(a pickle that could run code, or not a checkpoint) [{_brief(exc)}]") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as exc:
        raise InputError(path, f"not a readable PyTorch checkpoint (truncated, corrupt or another format) "
                               f"[{_brief(exc)}]") from None
    if not isinstance(state, dict):
        raise InputError(path, f"not a checkpoint: expected a dict, found {type(state).__name__}")
    return state


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(". ")[0]
    return f"{type(exc).__name__}: {text[:150]}" if text else type(exc).__name__


def capture_rng_state() -> dict[str, Any]:
    """The states of torch (CPU, and the current CUDA device if CUDA is in use), numpy and ``random``.

    Only the current device's CUDA state is taken: under DDP each process owns one GPU, and
    touching the others would create a CUDA context on every GPU from every process.
    """
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [int(py_version), list(py_internal), py_gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`capture_rng_state` returned (the CUDA state only if CUDA is available)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_states[0].cpu())
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
