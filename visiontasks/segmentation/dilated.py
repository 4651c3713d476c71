"""Dilated-convolution networks of Yu & Koltun (ICLR 2016): the VGG16 front-end and front-end + context.

Front-end (§4): VGG16 with pool4 and pool5 removed; conv5_1 … conv5_3 dilated by 2, fc6 as a 7×7
convolution dilated by 4 (4096), fc7 as 1×1 (4096), both with ReLU and dropout 0.5 (weights from the
ImageNet VGG16 when pretrained), a final 1×1 classifier to K channels (new layer: N(0, 0.001²),
bias 0 — the paper does not say; the released code's, fyu/dilation ``network.py`` l. 121-127),
output stride 8, bilinear upsampling ×8 to the input.

Padding, two schemes (``padding=``):

* ``"reflect"`` (default, the paper's): "we also remove the padding of the intermediate feature
  maps"; instead the *input* is reflection-padded. The unpadded layers shrink the map by 372 input
  pixels (4 + 8 + 24 + 48 + 96 + 192, conv1 … fc6), which the reference pads as 186 per side; so do
  we (plus the bottom/right rounding of H, W up to multiples of 8). The layers' coordinate maps put
  the centre of stride-8 cell i's receptive field at padded pixel ``8 i + 189.5``, i.e. input pixel
  ``8 i + 3.5``: the centre of its 8×8 block, which is where ``F.interpolate(mode="bilinear",
  align_corners=False)`` places it, so the upsampled output is pixel-aligned. Costs 1.3× the
  multiply-adds of the zero-padded scheme at 500×375 (569 vs 428 G; fc6 alone is 304 G).
* ``"zero"``: torchvision-style "same" zero padding in every layer (conv5 by 2, fc6 by 12); the input
  is zero-padded at the bottom/right to a multiple of 8. Cheaper; not the paper.

Either way the stride-8 score map has ceil(H/8) × ceil(W/8) cells, upsampled ×8 and cropped to H × W.
``dilated_context`` puts a :class:`ContextModule` (``context.py``) on the stride-8 class scores; the
paper trains the front-end first, then the context module on its output, then both jointly
(``init_from`` copies a front-end checkpoint into the joint model).

Shape shorthand: B images, K classes (background included), H×W input.
``forward((B, 3, H, W) in [0, 1]) -> {"out": (B, K, H, W) logits}``; ``scores(images) -> (B, K, ⌈H/8⌉, ⌈W/8⌉)``.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks.backbones import VGG16_POOL_INDICES, vgg16_torchvision
from visiontasks.registry import register_model
from visiontasks.segmentation.common import (
    ImageNetNormalize, check_num_classes, init_from_checkpoint, pad_to_multiple, reflect_pad, vgg16_fc_head,
)
from visiontasks.segmentation.context import ContextModule

__all__ = ["DilatedFrontEnd", "DilatedContextNet", "dilated_frontend", "dilated_context", "REFLECT_PAD"]

# (top/left, bottom/right) reflection padding of the paper scheme (derivation in the docstring).
REFLECT_PAD = (186, 186)
_PADDINGS = ("reflect", "zero")
_STRIDE = 8


class DilatedFrontEnd(nn.Module):
    """The front-end module.

    Args:
        num_classes: K, background included (21 for VOC).
        pretrained_backbone: load torchvision's ImageNet VGG16 (conv layers, fc6, fc7).
        padding: "reflect" (the paper: unpadded layers, reflection-padded input) or "zero".
    """

    def __init__(self, num_classes: int = 21, pretrained_backbone: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        check_num_classes(num_classes)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding
        self.normalize = ImageNetNormalize()
        vgg = vgg16_torchvision(pretrained_backbone)
        layers = list(vgg.features.children())
        pool4, pool5 = VGG16_POOL_INDICES[3:]
        for conv in layers[pool4 + 1: pool5]:
            if isinstance(conv, nn.Conv2d):
                conv.dilation, conv.padding = (2, 2), (2, 2)
        if padding == "reflect":
            for conv in layers:
                if isinstance(conv, nn.Conv2d):
                    conv.padding = (0, 0)
        self.features = nn.Sequential(*layers[:pool4], *layers[pool4 + 1: pool5])
        self.fc = vgg16_fc_head(vgg, fc6_dilation=4, fc6_padding=0 if padding == "reflect" else 12)
        self.final = nn.Conv2d(4096, num_classes, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "zero":
            return pad_to_multiple(x, _STRIDE)
        h, w = x.shape[-2:]
        before, after = REFLECT_PAD
        return reflect_pad(x, before, after + (-h) % _STRIDE, before, after + (-w) % _STRIDE)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Stride-8 class scores (B, K, ⌈H/8⌉, ⌈W/8⌉) of (B, 3, H, W) images in [0, 1]."""
        return self.final(self.fc(self.features(self._pad(self.normalize(images)))))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            ``{"out": (B, K, H, W) logits}``.
        """
        h, w = images.shape[-2:]
        out = F.interpolate(self.scores(images), scale_factor=_STRIDE, mode="bilinear", align_corners=False)
        return {"out": out[..., :h, :w]}


class DilatedContextNet(DilatedFrontEnd):
    """Front-end + context module (on the stride-8 class scores), then bilinear upsampling.

    Args:
        num_classes: K, background included; the context module has K channels.
        pretrained_backbone: see :class:`DilatedFrontEnd`.
        padding: see :class:`DilatedFrontEnd`.
        context: "basic" or "large" (the paper's best VOC result uses "large").
        init_noise: σ of the large module's eq. (5) initialisation, relative to C / c_{i+1}.
    """

    def __init__(self, num_classes: int = 21, pretrained_backbone: bool = False, padding: str = "reflect",
                 context: str = "large", init_noise: float = 1e-3) -> None:
        super().__init__(num_classes, pretrained_backbone, padding)
        self.context = ContextModule(num_classes, context, init_noise)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.context(super().scores(images))


@register_model("dilated_frontend", task="segmentation")
def dilated_frontend(num_classes: int = 21, pretrained_backbone: bool = False, padding: str = "reflect",
                     init_from: str | os.PathLike[str] | None = None) -> DilatedFrontEnd:
    """The front-end; ``init_from`` copies same-named weights from a checkpoint / state dict."""
    return init_from_checkpoint(DilatedFrontEnd(num_classes, pretrained_backbone, padding), init_from)


@register_model("dilated_context", task="segmentation")
def dilated_context(num_classes: int = 21, pretrained_backbone: bool = False, padding: str = "reflect",
                    context: str = "large", init_noise: float = 1e-3,
                    init_from: str | os.PathLike[str] | None = None) -> DilatedContextNet:
    """Front-end + context module; ``init_from`` = a trained front-end (the paper's schedule) or a joint model."""
    model = DilatedContextNet(num_classes, pretrained_backbone, padding, context, init_noise)
    return init_from_checkpoint(model, init_from)
