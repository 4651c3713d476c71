"""The two-stage detector: transform → backbone → proposer → RoI head (R-CNN family).

Composed like torchvision's ``GeneralizedRCNN`` and chainercv's ``FasterRCNN``. Faster R-CNN is
this class with a :class:`RegionProposalNetwork` proposer; Fast R-CNN the same with
:class:`PrecomputedProposals` and ``proposals=`` passed to ``forward``.

Training uses approximate joint training (Ren et al. 2015, §3.2): the RPN and RoI-head losses
are returned together (the caller sums them) and the proposals are treated as constants.

A proposer is a module ``proposer(images: ImageList, features, targets, proposals, scales) ->
(list of (R_i, 4) boxes in input pixels, dict of losses)``.

Shape shorthand: B = images, N = detections of an image.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.detection.roi_head import RoIHead
from visiontasks.detection.transform import DetectionTransform

__all__ = ["TwoStageDetector"]


def _drop_difficult(target: dict) -> dict:
    """py-faster-rcnn trains without VOC's ``difficult`` objects (``USE_DIFF = False``); so do we."""
    difficult = target.get("difficult")
    if difficult is None or not bool(difficult.any()):
        return target
    keep = ~difficult.bool()
    return {**target, "boxes": target["boxes"][keep], "labels": target["labels"][keep], "difficult": difficult[keep]}


def _check_inputs(images: list[torch.Tensor], targets: list[dict] | None,
                  proposals: list[torch.Tensor] | None) -> None:
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"images must be a non-empty list of (3, H, W) tensors, got {type(images).__name__}")
    for img in images:
        if not torch.is_tensor(img) or img.dim() != 3 or img.shape[0] != 3:
            shape = tuple(img.shape) if torch.is_tensor(img) else type(img).__name__
            raise ValueError(f"each image must be a (3, H, W) tensor, got {shape}")
    if targets is not None:
        if len(targets) != len(images):
            raise ValueError(f"got {len(targets)} targets for {len(images)} images")
        for t in targets:
            boxes = t.get("boxes")
            if boxes is None or "labels" not in t:
                raise ValueError(f"each target needs 'boxes' and 'labels', got keys {sorted(t)}")
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"target boxes must be (G, 4), got shape {tuple(boxes.shape)}")
    if proposals is not None and len(proposals) != len(images):
        raise ValueError(f"got proposals for {len(proposals)} images but {len(images)} images")


class TwoStageDetector(nn.Module):
    """Backbone, proposer and RoI head behind the detection contract of docs/CONTRACTS.md.

    Args:
        backbone: a ``visiontasks.backbones.Backbone`` (feature map of stride ``backbone.stride``).
        proposer: ``RegionProposalNetwork`` or ``PrecomputedProposals``.
        roi_head: the Fast R-CNN head.
        transform: normalisation, resizing and batching (default: 600/1000, padded to the stride).
    """

    def __init__(self, backbone: nn.Module, proposer: nn.Module, roi_head: RoIHead,
                 transform: DetectionTransform | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.proposer = proposer
        self.roi_head = roi_head
        self.transform = transform or DetectionTransform(size_divisible=getattr(backbone, "stride", 16))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor] | list[dict]:
        """Detects objects (eval) or computes the training losses (train).

        Args:
            images: B float tensors (3, H, W) in [0, 1], any sizes.
            targets: per image ``boxes`` (G, 4) xyxy float in original pixels and ``labels`` (G,)
                int64 in 1..K-1; G may be 0. Required in training.
            proposals: per image (R, 4) xyxy in original pixels, for a ``PrecomputedProposals``
                proposer.

        Returns:
            Training: ``{"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``
            (the RPN's terms only with an RPN), scalar tensors. Eval: B dicts ``boxes`` (N, 4),
            ``labels`` (N,) int64, ``scores`` (N,), in original-image pixels, scores descending.
        """
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        _check_inputs(images, targets, proposals)
        if self.training:
            targets = [_drop_difficult(t) for t in targets]
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(list(images), targets)
        sizes = [(int(h), int(w)) for h, w in batch.image_sizes]
        scales = self.transform.scale_factors(original_sizes, sizes)
        if proposals is not None:
            proposals = self.transform.resize_proposals(proposals, original_sizes, sizes)
        features = self.backbone(batch.tensors)
        boxes, proposer_losses = self.proposer(batch, features, targets, proposals, scales)
        detections, head_losses = self.roi_head(features, boxes, sizes, targets)
        if self.training:
            return {**proposer_losses, **head_losses}
        return self.transform.postprocess(detections, sizes, original_sizes)
