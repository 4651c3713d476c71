"""Checking a device string up front, so that a typo is one clear line, not a CUDA traceback."""
from __future__ import annotations

import torch

__all__ = ["check_device"]


def check_device(device: str | torch.device | None, what: str = "--device") -> torch.device | None:
    """Parses ``device`` and checks that this machine has it.

    Args:
        device: "cpu", "cuda", "cuda:1", "mps", a ``torch.device``, or None (left to the caller's default).
        what: how the value is named in the error (the option or argument).

    Returns:
        The ``torch.device`` (None for None).

    Raises:
        ValueError: not a device string, or a device this machine lacks (named, with the choices).
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{what} {device!r} is not a device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{what} {device!r}: CUDA is not available on this machine (use cpu)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{what} {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{what} {device!r}: MPS is not available on this machine (use cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{what} {device!r}: device type {dev.type!r} is not supported (use cpu, cuda or cuda:N)")
    return dev
