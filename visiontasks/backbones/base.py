"""What every backbone provides to the task heads.

A backbone maps an image batch (B, 3, H, W), already normalised with ImageNet statistics,
to one feature map (B, out_channels, H/stride, W/stride). Two-stage detectors also ask it for
the per-RoI head of the original network (VGG16's fc6/fc7, ResNet's conv5 block, ...), which
consumes pooled RoI features (R, out_channels, P, P) and returns (R, head_dim) vectors.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Backbone", "freeze"]


class Backbone(nn.Module):
    """Base class. Subclasses set ``out_channels``, ``stride``, ``pool_size`` and ``body``.

    Attributes:
        out_channels: channels of the feature map.
        stride: total stride of the feature map w.r.t. the input.
        pool_size: RoI pooling grid the original network's head expects (7 for VGG16, 6 for AlexNet).
    """

    out_channels: int
    stride: int
    pool_size: int

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def box_head(self) -> tuple[nn.Module, int]:
        """Returns ``(head, head_dim)``: a module mapping (R, C, P, P) → (R, head_dim)."""
        raise NotImplementedError


def freeze(module: nn.Module) -> None:
    """Stops gradients for every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(False)
