"""What every backbone provides to the task heads.

A backbone maps an image batch (B, 3, H, W), already normalised with ImageNet statistics,
to one feature map (B, out_channels, H/stride, W/stride); ``stride`` is the backbone's own
(16 for the R-CNN-family bodies, 64 for YOLOv1's darknet, ...). Two-stage detectors also ask it
for the per-RoI head of the original network (VGG16's fc6/fc7, ResNet's conv5 block, ...) sized
for their pooler: ``box_head(in_features)`` returns a NEW module on every call mapping pooled
RoI features (R, out_channels, P, P) — or flat (R, in_features) from a pyramid pooler — to
(R, head_dim) vectors. Where ``in_features`` equals the original network's fc6 input, fc6 and
fc7 carry the network's (ImageNet) weights; otherwise fc6 is newly initialised (SPP-net).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["Backbone", "freeze", "fc_head", "IMAGENET_MEAN", "IMAGENET_STD"]

#: ImageNet statistics (torchvision's), used by every model that normalises its input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Base class. Subclasses set ``out_channels``, ``stride``, ``pool_size`` and ``body``.

    ``frozen_stages`` means the same in every backbone: the number of leading stages, named as in
    the network's paper (conv1, conv2, …), whose parameters are frozen — VGG16's conv1 … conv5
    blocks, AlexNet's conv1 … conv5 layers, ResNet's conv1 (stem), conv2_x … conv4_x.

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

    @property
    def head_in_features(self) -> int:
        """Input width of the original network's per-RoI head (``out_channels * pool_size**2``)."""
        return self.out_channels * self.pool_size**2

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        """Returns ``(head, head_dim)``: a new module mapping pooled RoIs to (R, head_dim).

        Args:
            in_features: flattened width of the pooler's output (default :attr:`head_in_features`).
        """
        raise NotImplementedError


def freeze(module: nn.Module) -> None:
    """Stops gradients for every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(False)


def fc_head(fc67: nn.Sequential, in_features: int, native_in: int) -> nn.Sequential:
    """Flatten + a copy of an ``fc6, …, fc7, …`` stack, with fc6 rebuilt when the width differs.

    Args:
        fc67: the original layers (their first ``nn.Linear`` is fc6); copied, never shared.
        in_features: the pooler's flattened output width.
        native_in: fc6's original input width; equal widths keep the (pretrained) fc6.

    Returns:
        ``nn.Sequential(Flatten, nn.Sequential(fc6', ...))`` (the state-dict keys of the original head).
    """
    layers = copy.deepcopy(fc67)
    if int(in_features) != int(native_in):
        idx, fc6 = next((i, m) for i, m in enumerate(layers) if isinstance(m, nn.Linear))
        layers[idx] = nn.Linear(int(in_features), fc6.out_features)
    return nn.Sequential(nn.Flatten(1), layers)
