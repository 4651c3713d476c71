"""Inputs of the evaluators as numpy arrays: tensors (any device) or array-likes, one conversion."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_numpy"]


def to_numpy(value: Any, dtype: Any = None) -> np.ndarray:
    """A tensor (detached, moved to the CPU) or array-like as a numpy array, optionally of ``dtype``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)
