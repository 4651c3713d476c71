"""AlexNet (Krizhevsky et al.), the R-CNN / SPP-net backbone.

Feature map: conv5 after ReLU (pool5 removed), stride 16, 256 channels. The RoI head is the
original fc6 (256·6·6 → 4096) and fc7, so RoIs are pooled to 6×6 (R-CNN's pool5 size).
conv1 is frozen by default.
"""
from __future__ import annotations

import torch.nn as nn
import torchvision
from torchvision.models import AlexNet_Weights

from visiontasks.backbones.base import Backbone, fc_head, freeze
from visiontasks.backbones.pretrained import load_torchvision_weights
from visiontasks.registry import register_model

__all__ = ["AlexNetBackbone"]


class AlexNetBackbone(Backbone):
    """AlexNet conv1 … conv5 plus fc6/fc7 for the RoI head.

    Args:
        pretrained: load torchvision's ImageNet weights (from the local hub cache).
        frozen_stages: leading stages frozen, conv1 … conv5 (default 1: conv1).
    """

    out_channels = 256
    stride = 16
    pool_size = 6

    def __init__(self, pretrained: bool = False, frozen_stages: int = 1) -> None:
        super().__init__()
        if not 0 <= frozen_stages <= 5:
            raise ValueError(f"frozen_stages must be in [0, 5], got {frozen_stages}")
        net = torchvision.models.alexnet(weights=None)
        if pretrained:
            load_torchvision_weights(net, AlexNet_Weights.IMAGENET1K_V1)
        self.body = nn.Sequential(*list(net.features.children())[:12])
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv in convs[:frozen_stages]:
            freeze(conv)
        # dropout, fc6, relu, dropout, fc7, relu
        self.__dict__["_fc67"] = nn.Sequential(*list(net.classifier.children())[:6])

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        native = self.head_in_features
        return fc_head(self.__dict__["_fc67"], native if in_features is None else in_features, native), 4096


@register_model("alexnet", task="backbone")
def alexnet(pretrained: bool = False, frozen_stages: int = 1) -> AlexNetBackbone:
    return AlexNetBackbone(pretrained=pretrained, frozen_stages=frozen_stages)
