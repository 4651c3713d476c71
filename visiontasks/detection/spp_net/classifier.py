"""SPP-net as an image classifier (He et al. 2014, §2–3): any input size, a fixed-length output.

``get_model("spp_alexnet", num_classes=1000)``: AlexNet's conv1 … conv5 (the shared ``alexnet``
backbone's body), the spatial pyramid pooling layer in place of pool5 (levels {6, 3, 2, 1}: 50
bins × 256 channels = 12,800 values for any image size), then fc6 (12,800 → 4096), fc7 and fc8
with ReLU and dropout — the "SPP-net" version of a ConvNet that the paper trains single- and
multi-size. Registered with task ``classification`` (built by the registry; the train tools cover
detection and segmentation).

Shape shorthand: B = images, K = classes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from visiontasks.backbones import build_backbone
from visiontasks.backbones.base import IMAGENET_MEAN, IMAGENET_STD
from visiontasks.detection.spp import SPP_LEVELS, SpatialPyramidPooling2d
from visiontasks.registry import register_model

__all__ = ["SPPClassifier", "spp_alexnet"]


class SPPClassifier(nn.Module):
    """conv body → spatial pyramid pooling → fc6, fc7, fc8.

    Args:
        body: the convolutional layers (B, 3, H, W) → (B, C, h, w).
        channels: C.
        num_classes: K.
        levels: pyramid levels.
        hidden: width of fc6/fc7.
        dropout: dropout before fc6 and fc7 (0.5 as AlexNet).
    """

    def __init__(self, body: nn.Module, channels: int, num_classes: int = 1000,
                 levels: Sequence[int] = SPP_LEVELS, hidden: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        self.body = body
        self.spp = SpatialPyramidPooling2d(levels)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.spp.output_dim(channels), hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], any H, W large enough for the body → (B, K) logits."""
        return self.classifier(self.spp(self.body((images - self.mean) / self.std)))


@register_model("spp_alexnet", task="classification")
def spp_alexnet(num_classes: int = 1000, levels: Sequence[int] = SPP_LEVELS, pretrained_backbone: bool = False,
                dropout: float = 0.5) -> SPPClassifier:
    """AlexNet's convolutions with SPP in place of pool5 (conv weights from ImageNet if asked)."""
    backbone = build_backbone("alexnet", pretrained_backbone, {"frozen_stages": 0})
    return SPPClassifier(backbone.body, backbone.out_channels, num_classes, levels, dropout=dropout)
