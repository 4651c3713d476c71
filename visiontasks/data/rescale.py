"""Random rescaling by a ratio of the image's own size, as a ``torchvision.transforms.v2`` transform.

The segmentation papers' and toolkits' scale augmentation: MMSegmentation's VOC/ADE pipelines
(``configs/_base_/datasets/pascal_voc12.py``: ``RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0),
keep_ratio=True)`` before ``RandomCrop``) and DeepLab's random scale in [0.5, 2.0]. torchvision's
``v2.RandomResize`` and ``v2.ScaleJitter`` draw an absolute size (a shorter side, or a fraction of one
fixed target size); this draws one ratio ``r`` uniformly in ``[low, high]`` and resizes the image to
``round(r * H) x round(r * W)``, so images of different sizes are rescaled alike. Masks follow with
nearest-neighbour (``F.resize`` on a ``tv_tensors.Mask``), images bilinearly with antialiasing.

``data.scale_range: [low, high]`` switches it on for segmentation
(:func:`visiontasks.data.transforms.build_segmentation_transforms`, before the random crop).

Shape shorthand: H, W = image height and width.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from visiontasks.data.jitter import _canvas

__all__ = ["RandomRescale", "check_ratio_range"]


def check_ratio_range(ratio_range: Sequence[float], name: str = "ratio_range") -> tuple[float, float]:
    """``(low, high)`` as floats, 0 < low <= high, both finite.

    Raises:
        ValueError: otherwise, the message starting with ``name`` and quoting the value.
    """
    try:
        low, high = (float(r) for r in ratio_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {ratio_range!r}") from None
    if not (0.0 < low <= high and math.isfinite(high)):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {ratio_range!r}")
    return low, high


class RandomRescale(v2.Transform):
    """Resizes image and mask by one random ratio in ``[low, high]`` of their own size.

    Args:
        ratio_range: ``(low, high)``, 0 < low <= high (e.g. ``(0.75, 1.25)``).
    """

    def __init__(self, ratio_range: Sequence[float]) -> None:
        super().__init__()
        self.ratio_range = check_ratio_range(ratio_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _canvas(flat_inputs)
        low, high = self.ratio_range
        r = low + torch.rand(()).item() * (high - low)
        return {"size": [max(1, round(r * h)), max(1, round(r * w))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, params["size"], antialias=True)
