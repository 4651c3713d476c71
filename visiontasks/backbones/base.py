"""What every backbone provides to the task heads.

A backbone maps an image batch (B, 3, H, W), already normalised with ImageNet statistics,
to one feature map (B, out_channels, H/stride, W/stride); ``stride`` is the backbone's own
(16 for the R-CNN-family bodies, 64 for YOLOv1's darknet, ...). Two-stage detectors also ask it
for the per-RoI head of the original network (VGG16's fc6/fc7, ResNet's conv5 block, ...) sized
for their pooler: ``box_head(in_features)`` returns a NEW module on every call mapping pooled
RoI features (R, out_channels, P, P) — or flat (R, in_features) from a pyramid pooler — to
(R, head_dim) vectors. Where ``in_features`` equals the original network's fc6 input, fc6 and
fc7 carry the network's (ImageNet) weights; otherwise fc6 is newly initialised (SPP-net).

A detector asks a backbone for its features through :meth:`Backbone.feature_maps` (the batched
``ImageList``): a backbone that needs each image's unpadded size (SPP-net's scale pyramid) declares
``takes_image_list = True`` and gets the ``ImageList``; the others get the padded tensor.
:class:`ImageAsFeatures` is the empty backbone of R-CNN, whose CNN runs per warped region.

Shape shorthand: B = images, H, W = padded input size.
"""
from __future__ import annotations

import copy

from typing import Any

import torch
import torch.nn as nn
from torchvision.models.detection.image_list import ImageList

__all__ = ["Backbone", "ImageAsFeatures", "freeze", "fc_head", "IMAGENET_MEAN", "IMAGENET_STD"]

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
        takes_image_list: :meth:`forward` takes the batched ``ImageList`` instead of its padded
            tensor (False; SPP-net's scale pyramid: True).
    """

    out_channels: int
    stride: int
    pool_size: int
    takes_image_list: bool = False

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def feature_maps(self, images: ImageList) -> Any:
        """The features of a batched input: ``self(images)`` when :attr:`takes_image_list`, else
        ``self(images.tensors)`` ((B, 3, H, W) → (B, out_channels, H/stride, W/stride))."""
        return self(images if self.takes_image_list else images.tensors)

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


class ImageAsFeatures(Backbone):
    """No backbone: the "features" are the normalised, padded image batch itself (R-CNN, whose CNN
    runs on each warped region inside its pooler). No parameters; it has no box head of its own."""

    out_channels = 3
    stride = 1
    pool_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Identity()


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
