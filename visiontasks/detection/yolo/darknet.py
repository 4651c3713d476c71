"""YOLOv1's convolutional networks (Redmon et al. 2016, Figure 3 and §2.4) as backbones.

``darknet24`` is the paper's network without its two fully connected layers: 24 conv layers —
the first 20 are the ImageNet-pretrained part (GoogLeNet-like, with 1×1 reduction layers
followed by 3×3 layers instead of inception modules), the last 4 were added for detection —
with 2×2/2 max pooling, leaky ReLU 0.1 after every conv, stride 64, 1024 channels (7×7 at
448×448). Layer by layer it matches Figure 3 and darknet's ``cfg/yolo.cfg`` of the "CVPR
Experiments" commit (8fd18ad, Nov 2015): no batch norm, no locally connected layer (both came
later: the ``cfg/yolov1.cfg`` shipped today has ``batch_normalize=1`` everywhere and replaces the
4096-wide FC by a 3×3 locally connected layer with 256 filters; ``batch_norm=True`` gives the
former, the latter is not implemented).

``darknet9`` is Fast YOLO's network: "9 instead of 24" conv layers "and fewer filters", as in
darknet's ``cfg/yolo-tiny.cfg`` of Nov 2015 (16, 32, 64, 128, 256, 512 filters each followed by a
2×2/2 max pool, then three 1024-filter layers), stride 64, 1024 channels.

Both take darknet's input: pixels mapped to [-1, 1] (2x - 1, done by the model's transform).
Padding is ``kernel // 2`` (darknet's ``pad=1``). Conv weights are initialised He-normal for leaky ReLU 0.1, biases zero
(darknet draws uniform weights of scale ``sqrt(2 / fan_in)``, which shrinks activations by ~3×
per layer — harmless after ImageNet pretraining, fatal for 24 layers trained from scratch).
No ImageNet weights exist offline: ``pretrained=True`` is an error (the paper pretrained the
first 20 layers for about a week on ImageNet, 88 % top-5, before detection training).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch.nn as nn

from visiontasks.backbones.base import Backbone
from visiontasks.registry import register_model

__all__ = ["Darknet", "DARKNET24_LAYERS", "DARKNET9_LAYERS", "darknet24", "darknet9", "LEAKY_SLOPE"]

#: Negative slope of darknet's "leaky" activation.
LEAKY_SLOPE = 0.1

#: A conv layer ``(kernel, filters, stride)`` or ``"M"`` (2×2 max pool, stride 2).
Layer = Union[tuple[int, int, int], str]

_R4 = ((1, 256, 1), (3, 512, 1)) * 4
_R2 = ((1, 512, 1), (3, 1024, 1)) * 2

#: Figure 3 of the paper, top to bottom (24 conv layers, 4 max pools).
DARKNET24_LAYERS: tuple[Layer, ...] = (
    (7, 64, 2), "M",
    (3, 192, 1), "M",
    (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "M",
    *_R4, (1, 512, 1), (3, 1024, 1), "M",
    *_R2, (3, 1024, 1), (3, 1024, 2),
    (3, 1024, 1), (3, 1024, 1),
)

#: Fast YOLO (darknet's yolo-tiny.cfg of Nov 2015): 9 conv layers, 6 max pools.
DARKNET9_LAYERS: tuple[Layer, ...] = (
    (3, 16, 1), "M", (3, 32, 1), "M", (3, 64, 1), "M", (3, 128, 1), "M", (3, 256, 1), "M", (3, 512, 1), "M",
    (3, 1024, 1), (3, 1024, 1), (3, 1024, 1),
)


def _conv_block(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
    nn.init.kaiming_normal_(conv.weight, a=LEAKY_SLOPE, mode="fan_in", nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
    return nn.Sequential(*layers)


class Darknet(Backbone):
    """A plain darknet conv stack: every conv followed by (batch norm and) leaky ReLU 0.1.

    Args:
        layers: ``(kernel, filters, stride)`` tuples and ``"M"`` (2×2/2 max pool).
        batch_norm: batch norm after every conv, conv without bias (darknet's later cfgs);
            False in the paper.
        in_channels: image channels.

    Attributes:
        out_channels: filters of the last conv layer.
        stride: total stride (64 for both YOLOv1 networks).
        num_convs: number of conv layers.
    """

    pool_size = 7

    def __init__(self, layers: Sequence[Layer], batch_norm: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        cin, stride, convs = int(in_channels), 1, 0
        for layer in layers:
            if layer == "M":
                modules.append(nn.MaxPool2d(2, 2))
                stride *= 2
                continue
            kernel, cout, s = layer
            modules.append(_conv_block(cin, cout, kernel, s, batch_norm))
            cin, stride, convs = cout, stride * s, convs + 1
        if not convs:
            raise ValueError("a Darknet needs at least one conv layer")
        self.body = nn.Sequential(*modules)
        self.out_channels = cin
        self.stride = stride
        self.num_convs = convs

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        raise NotImplementedError("the darknet networks have no per-RoI head; they are YOLOv1's backbones "
                                  "(use yolov1 / fast_yolo, not a two-stage detector)")


def _no_weights(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"no ImageNet weights are available for {name!r} (the paper pretrained darknet's first "
                         "20 conv layers on ImageNet; train from scratch with pretrained=False, or use a shared "
                         "backbone such as 'vgg16' with pretrained weights)")


@register_model("darknet24", task="backbone")
def darknet24(pretrained: bool = False, batch_norm: bool = False) -> Darknet:
    """YOLOv1's 24-conv network (Figure 3 without the FC layers): 1024 channels, stride 64."""
    _no_weights("darknet24", pretrained)
    return Darknet(DARKNET24_LAYERS, batch_norm=batch_norm)


@register_model("darknet9", task="backbone")
def darknet9(pretrained: bool = False, batch_norm: bool = False) -> Darknet:
    """Fast YOLO's 9-conv network: 1024 channels, stride 64."""
    _no_weights("darknet9", pretrained)
    return Darknet(DARKNET9_LAYERS, batch_norm=batch_norm)
