"""Small helpers of the training loop: moving batches to a device, seeding, picking the device."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["to_device", "seed_everything", "resolve_device"]


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Moves tensors inside (nested) lists, tuples and dicts to ``device``; other values are kept."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


def seed_everything(seed: int) -> None:
    """Seeds torch (CPU and CUDA), numpy and ``random``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``None`` → CUDA if available else CPU; a bare "cuda" → this process's ``local_rank`` GPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
