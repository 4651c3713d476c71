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

from visiontasks.backbones.base import Backbone
from visiontasks.detection.base import Detector
from visiontasks.detection.roi_head import RoIHead
from visiontasks.detection.transform import DetectionTransform

__all__ = ["TwoStageDetector"]


class TwoStageDetector(Detector):
    """Backbone, proposer and RoI head behind the detection contract of docs/CONTRACTS.md.

    Args:
        backbone: a ``visiontasks.backbones.Backbone`` (feature map of stride ``backbone.stride``).
        proposer: ``RegionProposalNetwork`` or ``PrecomputedProposals``.
        roi_head: the Fast R-CNN head.
        transform: normalisation, resizing and batching (default: 600/1000, padded to the stride).
        loss_weights: multiplier per loss name (see :class:`Detector`).
        proposal_params: how external proposals are made (Fast R-CNN, SPP-net); None with an RPN.
    """

    def __init__(self, backbone: nn.Module, proposer: nn.Module, roi_head: RoIHead,
                 transform: nn.Module | None = None, loss_weights: dict[str, float] | None = None,
                 proposal_params: dict | None = None) -> None:
        super().__init__(loss_weights=loss_weights, proposal_params=proposal_params)
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a visiontasks.backbones.Backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.proposer = proposer
        self.roi_head = roi_head
        self.transform = transform or DetectionTransform(size_divisible=getattr(backbone, "stride", 16))

    def _score_owner(self) -> nn.Module:
        return self.roi_head.predictor

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor] | list[dict]:
        """Detects objects (eval) or computes the training losses (train).

        Args:
            images: B float tensors (3, H, W) in [0, 1], any sizes.
            targets: per image ``boxes`` (G, 4) xyxy float in original pixels and ``labels`` (G,)
                int64 in 1..K-1; G may be 0. Required in training.
            proposals: per image (R, 4) xyxy in original pixels, for a ``PrecomputedProposals``
                proposer; when None they are taken from ``targets[i]["proposals"]`` if present.

        Returns:
            Training: ``{"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``
            (the RPN's terms only with an RPN), scalar tensors. Eval: B dicts ``boxes`` (N, 4),
            ``labels`` (N,) int64, ``scores`` (N,), in original-image pixels, scores descending.
        """
        targets, proposals = self.prepare_inputs(images, targets, proposals)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(list(images), targets)
        sizes = [(int(h), int(w)) for h, w in batch.image_sizes]
        scales = self.transform.scale_factors(original_sizes, sizes)
        if proposals is not None:
            proposals = self.transform.resize_proposals(proposals, original_sizes, sizes)
        features = self.backbone.feature_maps(batch)  # the ImageList where the backbone takes one
        boxes, proposer_losses = self.proposer(batch, features, targets, proposals, scales)
        detections, head_losses = self.roi_head(features, boxes, sizes, targets)
        if self.training:
            return self.weigh_losses({**proposer_losses, **head_losses})
        return self.transform.postprocess(detections, sizes, original_sizes)
