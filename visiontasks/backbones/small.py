"""A small, fast backbone for CPU defaults and tests (not from a paper).

Five 3×3 conv stages with GroupNorm (batch-size independent, so batch 1–2 trains well),
stride 16, 128 channels; the RoI head is two 256-d fully connected layers on 7×7 RoIs.
About 0.6 M parameters in the body: a VOC-sized image runs in tens of milliseconds on a CPU core.
"""
from __future__ import annotations

import torch.nn as nn

from visiontasks.backbones.base import Backbone
from visiontasks.registry import register_model

__all__ = ["SmallBackbone"]


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    )


class SmallBackbone(Backbone):
    """Args:
        width: channels of the first stage (later stages double up to ``4 * width``).
        head_dim: width of the two fully connected RoI-head layers.
    """

    stride = 16
    pool_size = 7

    def __init__(self, width: int = 32, head_dim: int = 256) -> None:
        super().__init__()
        if width % 8 or width <= 0:
            raise ValueError(f"width must be a positive multiple of 8, got {width}")
        w = width
        self.body = nn.Sequential(
            _conv(3, w, 2), _conv(w, w, 1),
            _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1),
            _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1),
            _conv(4 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1),
        )
        self.out_channels = 4 * w
        self._head_dim = head_dim

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        d = self._head_dim
        head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(self.head_in_features if in_features is None else int(in_features), d), nn.ReLU(inplace=True),
            nn.Linear(d, d), nn.ReLU(inplace=True),
        )
        return head, d


@register_model("small", task="backbone")
def small(width: int = 32, head_dim: int = 256, pretrained: bool = False) -> SmallBackbone:
    if pretrained:
        raise ValueError("the 'small' backbone has no ImageNet weights; use pretrained=False")
    return SmallBackbone(width=width, head_dim=head_dim)
