"""Batching for detection/segmentation items whose images differ in size.

Shape shorthand: B = batch size.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["collate_fn"]


def collate_fn(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Splits ``[(image, target), ...]`` into a list of B images and a list of B targets.

    Args:
        batch: dataset items.

    Returns:
        ``(images, targets)``; images keep their own sizes (no stacking, no padding).
    """
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    return images, targets
