"""EDeconvNet: DeconvNet ensembled with FCN-8s (Noh, Hong & Han, ICCV 2015, §3.3 / §4.2, Table 1).

The paper: "given two sets of class conditional probability maps of an input image computed
independently by the proposed method and FCN, we compute the mean of both output maps" (then a
fully connected CRF, which we do not run). ``combine="mean"`` does that: the softmax of each
segmenter's scores, averaged.

The released code combines differently (HyeonwooNoh/DeconvNet
``inference/generate_EDeconvNet_CRF_results.m`` l. 111-115): it multiplies DeconvNet's
max-aggregated raw scores by FCN-8s's raw scores floored at 0 (``ens_score = deconv_score .*
max(0, fcn_score)``), then takes a softmax of the product for the CRF (l. 121-122).
``combine="product"`` does that (DeconvNet's scores floored at 0 as well, which the instance-wise
aggregation already guarantees).

Both members see the same image; each keeps its own inference (DeconvNet instance-wise or full).

Shape shorthand: B images, K classes (background included), H×W input.
``forward((B, 3, H, W) in [0, 1]) -> {"out": (B, K, H, W)}``; with ``"mean"``, ``out`` is the log
of the mean probability, so its softmax is the mean map exactly and its argmax the ensemble's label.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from visiontasks.registry import register_model
from visiontasks.segmentation.common import init_from_checkpoint
from visiontasks.segmentation.deconvnet.model import DeconvNet
from visiontasks.segmentation.fcn import fcn8s

__all__ = ["EnsembleSegmenter", "edeconvnet", "COMBINES"]

COMBINES = ("mean", "product")


class EnsembleSegmenter(nn.Module):
    """Two segmenters' class-conditional maps combined pixel by pixel.

    Args:
        first: a segmenter, ``first(images)["out"]`` -> (B, K, H, W) scores (DeconvNet).
        second: another with the same K (FCN-8s).
        combine: "mean" (the paper: mean of the softmax maps) or "product" (the released code:
            ``max(0, first) · max(0, second)`` on raw scores).
    """

    def __init__(self, first: nn.Module, second: nn.Module, combine: str = "mean") -> None:
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"model.combine must be one of {COMBINES}, got {combine!r}")
        self.first, self.second, self.combine = first, second, combine

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            ``{"out": (B, K, H, W)}``: log of the mean probability ("mean") or the product of the
            floored scores ("product").
        """
        a, b = self.first(images)["out"].float(), self.second(images)["out"].float()
        if a.shape != b.shape:
            raise ValueError(f"the two segmenters disagree: {tuple(a.shape)} vs {tuple(b.shape)} (same K needed)")
        if self.combine == "product":
            return {"out": a.clamp(min=0) * b.clamp(min=0)}
        mean = (a.softmax(1) + b.softmax(1)) / 2
        return {"out": mean.clamp(min=torch.finfo(mean.dtype).tiny).log()}


@register_model("edeconvnet", task="segmentation")
def edeconvnet(num_classes: int = 21, deconvnet_from: str | os.PathLike[str] | None = None,
               fcn8s_from: str | os.PathLike[str] | None = None, inference: str = "instance",
               combine: str = "mean") -> EnsembleSegmenter:
    """EDeconvNet: a trained DeconvNet and a trained FCN-8s, ensembled (the paper's EDeconvNet, without its CRF).

    Args:
        num_classes: K, background included.
        deconvnet_from: checkpoint of a trained ``deconvnet`` run (its weights are copied).
        fcn8s_from: checkpoint of a trained ``fcn8s`` run.
        inference: DeconvNet's inference ("instance", the paper's, or "full").
        combine: "mean" (paper) or "product" (released code).
    """
    deconv = init_from_checkpoint(DeconvNet(num_classes, inference=inference), deconvnet_from)
    fcn = fcn8s(num_classes=num_classes, init_from=fcn8s_from)
    return EnsembleSegmenter(deconv, fcn, combine)
