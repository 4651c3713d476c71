"""Fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015): FCN-32s, FCN-16s, FCN-8s on VGG16.

Architecture, as in the paper and its reference Caffe models (``voc-fcn{32,16,8}s/net.py``):

* VGG16 conv1_1 … pool5 with conv1_1 zero-padded by **100** and Caffe's ceil-mode pooling; fc6/fc7
  convolutionalised (7×7×4096, 1×1×4096, weights reshaped from the ImageNet classifier), each
  followed by ReLU and dropout 0.5; 1×1 class scoring layers ``score_fr`` (on fc7), ``score_pool4``,
  ``score_pool3``, all **zero-initialised** (§4.3: "random initialization yielded neither better
  performance nor faster convergence").
* Upsampling by transposed convolutions initialised to bilinear interpolation (``upsample.py``;
  the reference's ``surgery.interp`` on every layer named ``up*``, ``voc-fcn8s/solve.py`` l. 24-25).
  32s: ×32; 16s: ×2 + fuse pool4 + ×16; 8s: ×2 + pool4 + ×2 + pool3 + ×8. The final ×32 / ×16 / ×8
  layer is always fixed. The paper and the released code differ on the intermediate ×2 layers
  ``upscore2`` / ``upscore_pool4``, and this module follows one or the other, never both at once:

  - the paper's text initialises them to bilinear and then learns them (§3.3: the deconvolution
    filter need not be fixed but can be learned; §4.2 and §4.3 say so of the 2× layers):
    ``learn_upsampling=True``;
  - the released models fix them like the final layer, ``param=[dict(lr_mult=0)]`` on every
    Deconvolution (shelhamer/fcn.berkeleyvision.org @1305c73, ``voc-fcn8s/net.py`` l. 58-61
    ``upscore2``, l. 68-71 ``upscore_pool4``, l. 78-81 ``upscore8``; ``voc-fcn16s/net.py`` l. 58-61,
    68-71; ``voc-fcn8s-atonce/net.py`` l. 59-62, 72-75, 85-88): ``learn_upsampling=False``, the
    default and what every FCN config of ``configs/segmentation`` uses, as the configs follow the
    released solvers. Its README (l. 67-69) explains the change: "In our original experiments the
    interpolation layers were initialized to bilinear kernels and then learned. In follow-up
    experiments, and this reference implementation, the bilinear kernels are fixed. There is no
    significant difference in accuracy".
* Skip fusion by summation after cropping (Caffe's ``Crop`` layer). The 100-pixel padding makes every
  map large enough for any H, W ≥ 1, and the crop offsets follow from the layers' coordinate maps
  ``x_in = stride · x_out + (kernel - 1) / 2 - pad`` (transposed convs invert theirs): in input
  pixels fc7 cell j sits at ``32 j + 12.5``, pool4 cell at ``16 j - 91.5``, pool3 at ``8 j - 95.5``,
  so score_pool4 is cropped by 5, score_pool3 by 9 and the final maps by 19 (32s), 27 (16s), 31 (8s),
  the reference's offsets. The output is therefore exactly H × W, pixel-aligned, for any input size.
* Training is staged in the paper (32s → 16s → 8s, each initialised from the previous stage:
  ``init_from``; the reference re-initialises every ``up*`` layer to bilinear after copying,
  ``voc-fcn8s/solve.py`` l. 21-25, while ``init_from`` copies them: the same weights when they are
  fixed). The reference's "at-once" FCN-8s instead trains all skips together and scales
  pool4 by 0.01 and pool3 by 0.0001 (fixed) before scoring: ``at_once=True``.

Input differs from Caffe in one respect: images are RGB in [0, 1] normalised with torchvision's
ImageNet mean/std (the weights are torchvision's), not BGR 0–255 minus the mean pixel.

Shape shorthand: B images, K classes (background included), H×W input.
``forward((B, 3, H, W) in [0, 1]) -> {"out": (B, K, H, W) logits}``.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from visiontasks.backbones import VGG16_POOL_INDICES, vgg16_torchvision
from visiontasks.registry import register_model
from visiontasks.segmentation.common import ImageNetNormalize, check_num_classes, init_from_checkpoint, vgg16_fc_head
from visiontasks.segmentation.upsample import bilinear_upsampler

__all__ = ["FCN", "FCN_CROP_OFFSETS", "fcn32s", "fcn16s", "fcn8s"]

# Crop offsets of the reference models (derived in the module docstring).
FCN_CROP_OFFSETS = {"pool4": 5, "pool3": 9, "32s": 19, "16s": 27, "8s": 31}
_CONV1_PAD = 100
_AT_ONCE_SCALE = {"pool4": 0.01, "pool3": 0.0001}
_VARIANTS = ("32s", "16s", "8s")


def _crop(x: torch.Tensor, offset: int, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    if x.shape[-2] < offset + h or x.shape[-1] < offset + w:  # cannot happen with the 100-px padding
        raise RuntimeError(f"cannot crop {tuple(x.shape[-2:])} at offset {offset} to {size}")
    return x[..., offset:offset + h, offset:offset + w]


def _zero_conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCN(nn.Module):
    """FCN-32s / 16s / 8s with a VGG16 body.

    Args:
        num_classes: K, background included (21 for VOC).
        variant: "32s", "16s" or "8s".
        pretrained_backbone: load torchvision's ImageNet VGG16 (conv layers and fc6/fc7).
        at_once: the reference's at-once variant (fixed pool4 ×0.01 / pool3 ×0.0001 scaling);
            False (default) is the paper's staged scheme. Only for 16s / 8s.
        learn_upsampling: learn the bilinear-initialised ×2 layers ``upscore2`` / ``upscore_pool4``
            (the paper's text); False (default) keeps them fixed at bilinear (``requires_grad=False``,
            the released code's ``lr_mult: 0``). Only for 16s / 8s; the final layer is fixed in both.
    """

    def __init__(self, num_classes: int = 21, variant: str = "8s", pretrained_backbone: bool = False,
                 at_once: bool = False, learn_upsampling: bool = False) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        if at_once and variant == "32s":
            raise ValueError("at_once scales the pool4/pool3 skips; FCN-32s has none (use variant '16s' or '8s')")
        if learn_upsampling and variant == "32s":
            raise ValueError("learn_upsampling learns the ×2 layers; FCN-32s has only its fixed ×32 layer "
                             "(use variant '16s' or '8s')")
        self.variant = variant
        self.at_once = at_once
        self.learn_upsampling = bool(learn_upsampling)
        self.normalize = ImageNetNormalize()
        vgg = vgg16_torchvision(pretrained_backbone)
        layers = list(vgg.features.children())
        layers[0].padding = (_CONV1_PAD, _CONV1_PAD)
        for i in VGG16_POOL_INDICES:
            layers[i].ceil_mode = True  # Caffe pooling
        p3, p4, p5 = VGG16_POOL_INDICES[2:]
        self.to_pool3 = nn.Sequential(*layers[: p3 + 1])
        self.to_pool4 = nn.Sequential(*layers[p3 + 1: p4 + 1])
        self.to_pool5 = nn.Sequential(*layers[p4 + 1: p5 + 1])
        self.fc = vgg16_fc_head(vgg)
        self.score_fr = _zero_conv1x1(4096, num_classes)
        if variant == "32s":
            self.upscore32 = bilinear_upsampler(num_classes, 32, learnable=False)
            return
        self.score_pool4 = _zero_conv1x1(512, num_classes)
        self.upscore2 = bilinear_upsampler(num_classes, 2, learnable=self.learn_upsampling)
        if variant == "16s":
            self.upscore16 = bilinear_upsampler(num_classes, 16, learnable=False)
            return
        self.score_pool3 = _zero_conv1x1(256, num_classes)
        self.upscore_pool4 = bilinear_upsampler(num_classes, 2, learnable=self.learn_upsampling)
        self.upscore8 = bilinear_upsampler(num_classes, 8, learnable=False)

    def _skip(self, name: str, feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.at_once:
            feature = feature * _AT_ONCE_SCALE[name]
        score = getattr(self, f"score_{name}")(feature)
        return _crop(score, FCN_CROP_OFFSETS[name], like.shape[-2:])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            ``{"out": (B, K, H, W) logits}``.
        """
        size = images.shape[-2:]
        pool3 = self.to_pool3(self.normalize(images))
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))
        if self.variant == "32s":
            return {"out": _crop(self.upscore32(score), FCN_CROP_OFFSETS["32s"], size)}
        score = self.upscore2(score)
        score = score + self._skip("pool4", pool4, score)
        if self.variant == "16s":
            return {"out": _crop(self.upscore16(score), FCN_CROP_OFFSETS["16s"], size)}
        score = self.upscore_pool4(score)
        score = score + self._skip("pool3", pool3, score)
        return {"out": _crop(self.upscore8(score), FCN_CROP_OFFSETS["8s"], size)}


def _build(variant: str, num_classes: int, pretrained_backbone: bool, init_from: str | os.PathLike[str] | None,
           at_once: bool = False, learn_upsampling: bool = False) -> FCN:
    return init_from_checkpoint(FCN(num_classes, variant, pretrained_backbone, at_once, learn_upsampling), init_from)


@register_model("fcn32s", task="segmentation")
def fcn32s(num_classes: int = 21, pretrained_backbone: bool = False,
           init_from: str | os.PathLike[str] | None = None) -> FCN:
    """FCN-32s. ``init_from``: a checkpoint / state dict whose same-named weights are copied."""
    return _build("32s", num_classes, pretrained_backbone, init_from)


@register_model("fcn16s", task="segmentation")
def fcn16s(num_classes: int = 21, pretrained_backbone: bool = False,
           init_from: str | os.PathLike[str] | None = None, at_once: bool = False,
           learn_upsampling: bool = False) -> FCN:
    """FCN-16s; the paper initialises it from a trained FCN-32s (``init_from``). ``learn_upsampling``: see :class:`FCN`."""
    return _build("16s", num_classes, pretrained_backbone, init_from, at_once, learn_upsampling)


@register_model("fcn8s", task="segmentation")
def fcn8s(num_classes: int = 21, pretrained_backbone: bool = False,
          init_from: str | os.PathLike[str] | None = None, at_once: bool = False,
          learn_upsampling: bool = False) -> FCN:
    """FCN-8s; the paper initialises it from a trained FCN-16s (``init_from``). ``learn_upsampling``: see :class:`FCN`."""
    return _build("8s", num_classes, pretrained_backbone, init_from, at_once, learn_upsampling)
