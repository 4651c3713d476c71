"""A small FCN for CPU defaults and tests: the FCN-16s/8s scheme on the ``small`` backbone.

Not a paper model: it applies Long et al.'s recipe (1×1 score layers on two strides, the coarser
upsampled ×2 and summed with the finer, then upsampled to the input) to the
``visiontasks.backbones.SmallBackbone`` (stride 16, GroupNorm), so the default segmentation
config trains on two CPU cores in minutes. Unlike FCN it upsamples with fixed bilinear
interpolation (``F.interpolate``), which is what FCN's deconvolutions are initialised to.

Shape shorthand: B images, K classes (background included), H×W input.
``forward((B, 3, H, W) in [0, 1]) -> {"out": (B, K, H, W)}`` for any H, W.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks.backbones.small import SmallBackbone
from visiontasks.registry import register_model
from visiontasks.segmentation.common import ImageNetNormalize, check_num_classes, pad_to_multiple

__all__ = ["SmallFCN", "fcn_small"]


class SmallFCN(nn.Module):
    """Args:
        num_classes: K, background included.
        width: first-stage width of the small backbone.
    """

    def __init__(self, num_classes: int = 21, width: int = 32) -> None:
        super().__init__()
        check_num_classes(num_classes)
        body = SmallBackbone(width=width).body
        self.stage8 = body[:6]   # stride 8, 4·width channels
        self.stage16 = body[6:]  # stride 16, 4·width channels
        self.score16 = nn.Conv2d(4 * width, num_classes, 1)
        self.score8 = nn.Conv2d(4 * width, num_classes, 1)
        nn.init.zeros_(self.score8.weight)  # FCN zero-initialises the skip score layers
        nn.init.zeros_(self.score8.bias)
        self.normalize = ImageNetNormalize()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        # Pad to a multiple of 16 so both strides divide exactly, crop back at the end.
        x = pad_to_multiple(self.normalize(x), 16)
        f8 = self.stage8(x)
        s16 = self.score16(self.stage16(f8))
        s8 = self.score8(f8) + F.interpolate(s16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        out = F.interpolate(s8, scale_factor=8, mode="bilinear", align_corners=False)
        return {"out": out[..., :h, :w]}


@register_model("fcn_small", task="segmentation")
def fcn_small(num_classes: int = 21, width: int = 32, pretrained_backbone: bool = False,
              stages: dict | None = None) -> SmallFCN:
    """The small FCN; ``stages`` trains it in DeconvNet's two stages (the CPU stand-in the tests use,
    see :mod:`visiontasks.segmentation.deconvnet.stages`)."""
    if pretrained_backbone:
        raise ValueError("the small backbone has no ImageNet weights; use pretrained_backbone=False")
    model = SmallFCN(num_classes=num_classes, width=width)
    if stages is not None:
        from visiontasks.segmentation.deconvnet.stages import attach_stages

        attach_stages(model, stages)
    return model
