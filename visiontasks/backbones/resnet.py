"""ResNet-18/50 C4 backbones (He et al.), the Faster R-CNN ResNet setting.

Feature map: the output of conv4_x (``layer3``), stride 16, 256 (R18) or 1024 (R50) channels.
The RoI head is conv5_x (``layer4``, whose first block has stride 2) followed by global average
pooling, as in the ResNet paper's Faster R-CNN and Detectron's C4 models; RoIs are therefore
pooled to 14×14. All BatchNorm layers are frozen (``FrozenBatchNorm2d``), and conv1 (the stem)
plus conv2_x are frozen by default (``frozen_stages=2``, the stages as the ResNet paper's table
names them; see ``Backbone``).
"""
from __future__ import annotations

import copy

import torch.nn as nn
import torchvision
from torchvision.models import ResNet18_Weights, ResNet50_Weights
from torchvision.ops.misc import FrozenBatchNorm2d

from visiontasks.backbones.base import Backbone, freeze
from visiontasks.backbones.pretrained import load_torchvision_weights
from visiontasks.registry import register_model

__all__ = ["ResNetC4Backbone"]

_ARCHS = {
    "resnet18": (torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, 256, 512),
    "resnet50": (torchvision.models.resnet50, ResNet50_Weights.IMAGENET1K_V1, 1024, 2048),
}


class ResNetC4Backbone(Backbone):
    """ResNet conv1 … conv4_x as body, conv5_x + average pooling as RoI head.

    Args:
        arch: "resnet18" or "resnet50".
        pretrained: load torchvision's ImageNet weights (from the local hub cache).
        frozen_stages: leading stages frozen, conv1 (stem) … conv4_x: 0 = none, 1 = conv1,
            2 = conv1 + conv2_x (default, Detectron's C4 setting), 3 = … + conv3_x, 4 = all.
    """

    stride = 16
    pool_size = 14

    def __init__(self, arch: str = "resnet50", pretrained: bool = False, frozen_stages: int = 2) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"arch must be one of {sorted(_ARCHS)}, got {arch!r}")
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [0, 4], got {frozen_stages}")
        builder, weights, self.out_channels, head_dim = _ARCHS[arch]
        net = builder(weights=None, norm_layer=FrozenBatchNorm2d)
        if pretrained:
            load_torchvision_weights(net, weights)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.body = nn.Sequential(stem, net.layer1, net.layer2, net.layer3)
        for stage in list(self.body)[:frozen_stages]:
            freeze(stage)
        self._head_dim = head_dim
        self.__dict__["_res5"] = net.layer4

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        if in_features is not None and int(in_features) != self.head_in_features:
            raise ValueError(f"the ResNet C4 head (conv5_x) needs spatial {self.pool_size}x{self.pool_size} RoI "
                             f"features ({self.head_in_features} values), got a pooler of width {in_features}; "
                             "use pooler roi_pool or roi_align with output_size 14")
        head = nn.Sequential(copy.deepcopy(self.__dict__["_res5"]), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        return head, self._head_dim


@register_model("resnet50", task="backbone")
def resnet50(pretrained: bool = False, frozen_stages: int = 2) -> ResNetC4Backbone:
    return ResNetC4Backbone("resnet50", pretrained=pretrained, frozen_stages=frozen_stages)


@register_model("resnet18", task="backbone")
def resnet18(pretrained: bool = False, frozen_stages: int = 2) -> ResNetC4Backbone:
    return ResNetC4Backbone("resnet18", pretrained=pretrained, frozen_stages=frozen_stages)
