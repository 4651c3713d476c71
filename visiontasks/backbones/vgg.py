"""VGG16 (Simonyan & Zisserman) as used by Fast/Faster R-CNN, FCN, DeconvNet and dilated nets.

Feature map: conv5_3 after ReLU (pool5 removed), stride 16, 512 channels. The RoI head is the
original classifier's fc6 (512·7·7 → 4096) and fc7 (4096 → 4096) with ReLU and dropout.
Following Fast R-CNN §4.5, conv1_1 … conv2_2 are frozen by default (``frozen_stages=2``).
"""
from __future__ import annotations

import torch.nn as nn
import torchvision
from torchvision.models import VGG16_Weights

from visiontasks import winograd_conv
from visiontasks.backbones.base import Backbone, fc_head, freeze
from visiontasks.backbones.pretrained import load_torchvision_weights
from visiontasks.registry import register_model

__all__ = ["VGG16Backbone", "vgg16_torchvision", "VGG16_POOL_INDICES"]

# Indices of the five max-pool layers in torchvision's vgg16().features.
VGG16_POOL_INDICES = (4, 9, 16, 23, 30)


def vgg16_torchvision(pretrained: bool = False) -> torchvision.models.VGG:
    """torchvision's VGG16 (no BN), with ImageNet weights loaded offline-safely if asked."""
    model = torchvision.models.vgg16(weights=None)
    if pretrained:
        load_torchvision_weights(model, VGG16_Weights.IMAGENET1K_V1)
    winograd_conv.mark(model.features)  # fp32 CPU: NNPACK's Winograd kernel (measured faster whole)
    return model


class VGG16Backbone(Backbone):
    """VGG16 conv1_1 … conv5_3 (stride 16, 512 ch) plus fc6/fc7 for the RoI head.

    Args:
        pretrained: load torchvision's ImageNet weights (from the local hub cache).
        frozen_stages: leading stages frozen, the blocks conv1 … conv5 (default 2: conv1 + conv2, as Fast R-CNN).
    """

    out_channels = 512
    stride = 16
    pool_size = 7

    def __init__(self, pretrained: bool = False, frozen_stages: int = 2) -> None:
        super().__init__()
        if not 0 <= frozen_stages <= 5:
            raise ValueError(f"frozen_stages must be in [0, 5], got {frozen_stages}")
        vgg = vgg16_torchvision(pretrained)
        self.body = nn.Sequential(*list(vgg.features.children())[: VGG16_POOL_INDICES[-1]])
        if frozen_stages > 0:
            freeze(self.body[: VGG16_POOL_INDICES[frozen_stages - 1] + 1])
        # fc6, relu, dropout, fc7, relu, dropout (the ImageNet fc8 is dropped). Kept out of the
        # module tree: each head that asks for it gets its own copy.
        self.__dict__["_fc67"] = nn.Sequential(*list(vgg.classifier.children())[:6])

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        native = self.head_in_features
        return fc_head(self.__dict__["_fc67"], native if in_features is None else in_features, native), 4096


@register_model("vgg16", task="backbone")
def vgg16(pretrained: bool = False, frozen_stages: int = 2) -> VGG16Backbone:
    return VGG16Backbone(pretrained=pretrained, frozen_stages=frozen_stages)
