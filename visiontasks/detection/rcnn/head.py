"""R-CNN's RoI head: warped-region pooler → fc6/fc7 → softmax (fine-tuning) or SVMs + box regressors.

:class:`RCNNHead` is an :class:`~visiontasks.detection.roi_head.RoIHead` whose pooler is a
:class:`~visiontasks.detection.rcnn.warp.WarpedRegionPooler` (so its "pooled features" are
pool5 of the warped regions) and whose predictor changes once in a run's life:

1. fine-tuning (§2.3 "Supervised pre-training"/"Domain-specific fine-tuning"): a
   ``FastRCNNPredictor`` gives the (K+1)-way softmax; training samples RoIs exactly as
   ``RoIHead`` does (IoU ≥ 0.5 → that class, IoU in [0, 0.5) → background with
   ``RCNN_ROI.bg_iou_lo = 0``), and the builder gives the box loss weight 0 (R-CNN fine-tunes without it);
2. after the fitting stages: an :class:`~visiontasks.detection.rcnn.predictor.SVMBoxPredictor`,
   which needs fc7 (for the SVMs) *and* pool5 (for the box regressors): the head hands it both
   (``predictor.uses_pool5``).

:meth:`RCNNHead.set_predictor` swaps the predictor (keeping its test-time settings), and loading
a state dict that holds the fitted predictor's buffers swaps it automatically, so a model built
from a config loads a fitted R-CNN checkpoint (``visiontasks.load_model``, ``tools/eval.py det
--checkpoint``) — and an SGD checkpoint back into the softmax.

At test time regions are processed ``chunk_size`` at a time from the crop to the predictor's
outputs (margins and deltas), so memory does not grow with the number of proposals.

Shape shorthand: B = images, R = regions, K = classes incl. background, D = fc7 width, F = pool5 width.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from visiontasks.detection.predictor import FastRCNNPredictor
from visiontasks.detection.rcnn.predictor import SVMBoxPredictor
from visiontasks.detection.rcnn.warp import WarpedRegionPooler, rois_with_index
from visiontasks.detection.roi_head import RoIHead
from visiontasks.detection.settings import RCNN_ROI, RoIHeadSettings

__all__ = ["RCNNHead"]

_TEST_SETTINGS = ("score_thresh", "nms_thresh", "detections_per_img")


class RCNNHead(RoIHead):
    """RoI head of R-CNN (see the module docstring).

    Args:
        pooler: the warped-region pooler (it owns the CNN body).
        box_head: fc6/fc7 (``backbone.box_head()``), (R, C, P, P) → (R, D).
        predictor: the fine-tuning ``FastRCNNPredictor`` (or a fitted ``SVMBoxPredictor``).
        fc7_dim: D.
        pool5_dim: F = ``pooler.output_dim(C)``.
        settings: RoI sampling of the fine-tuning (see ``RoIHead``; R-CNN's: ``RCNN_ROI``).
    """

    def __init__(self, pooler: WarpedRegionPooler, box_head: nn.Module, predictor: nn.Module, fc7_dim: int,
                 pool5_dim: int, settings: RoIHeadSettings = RCNN_ROI) -> None:
        super().__init__(pooler, box_head, predictor, settings)
        self.fc7_dim = int(fc7_dim)
        self.pool5_dim = int(pool5_dim)

    @property
    def fitted(self) -> bool:
        """Whether the predictor is the fitted SVM/box-regression one."""
        return isinstance(self.predictor, SVMBoxPredictor)

    def _settings(self) -> dict:
        return {k: getattr(self.predictor, k) for k in _TEST_SETTINGS}

    def make_svm_predictor(self) -> SVMBoxPredictor:
        """A new (zero) SVM/box-regression predictor with this head's sizes and test-time settings."""
        return SVMBoxPredictor(self.fc7_dim, self.pool5_dim, self.num_classes, **self._settings())

    def set_predictor(self, predictor: nn.Module) -> None:
        """Replaces the predictor; the test-time settings (score/NMS thresholds) carry over."""
        settings = self._settings()
        ref = next(iter([*self.predictor.parameters(), *self.predictor.buffers()]), None)
        if ref is not None:
            predictor = predictor.to(ref.device)
        for k, v in settings.items():
            setattr(predictor, k, v)
        self.predictor = predictor

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # A fitted checkpoint carries the SVM buffers, an SGD one the softmax: take the matching
        # predictor before the children load (sizes are this head's, so a mismatch still fails).
        if f"{prefix}predictor.svm_weight" in state_dict and not self.fitted:
            self.set_predictor(self.make_svm_predictor())
        elif f"{prefix}predictor.cls_score.weight" in state_dict and self.fitted:
            self.set_predictor(FastRCNNPredictor(self.fc7_dim, self.num_classes))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def region_features(self, features: object, proposals: list[torch.Tensor],
                        image_sizes: list[tuple[int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(fc7 (n, D), pool5 (n, ...))`` of a chunk of regions at a time, in the order of ``proposals``.

        R-CNN's warped-region pooler crops from the images (``pool_rois``); any other pooler
        (SPP-net's pyramid on conv5 features) is called on one chunk of one image's regions at a time.
        """
        if hasattr(self.pooler, "pool_rois"):
            rois = rois_with_index(proposals).to(features.device)
            step = self.pooler.chunk_size
            for start in range(0, len(rois), step):
                pool5 = self.pooler.pool_rois(features, rois[start:start + step], image_sizes)
                yield self.box_head(pool5), pool5
            return
        step = int(getattr(self.pooler, "chunk_size", 1024))
        for b, boxes in enumerate(proposals):
            for start in range(0, len(boxes), step):
                chunk = [boxes[start:start + step] if i == b else boxes.new_zeros((0, 4))
                         for i in range(len(proposals))]
                pool5 = self.pooler(features, chunk, image_sizes)
                yield self.box_head(pool5), pool5

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Training: ``RoIHead``'s sampled softmax loss. Eval: chunked scoring of every proposal.

        Args:
            features: (B, 3, H, W) normalised images (R-CNN's backbone slot is the identity), or
                the backbone's features for another pooler (SPP-net).
            proposals: B tensors (R_i, 4) xyxy in image pixels.
            image_sizes: B (h, w).
            targets: training only.
        """
        if self.training:
            if self.fitted:
                self.predictor.losses()  # raises: explains why a fitted R-CNN does not train
            return super().forward(features, proposals, image_sizes, targets)
        logits, deltas = [], []
        for fc7, pool5 in self.region_features(features, proposals, image_sizes):
            out = self.predictor(fc7, pool5) if getattr(self.predictor, "uses_pool5", False) else self.predictor(fc7)
            logits.append(out[0])
            deltas.append(out[1])
        if not logits:
            k, device = self.num_classes, proposals[0].device if proposals else None
            logits, deltas = [torch.zeros((0, k), device=device)], [torch.zeros((0, k, 4), device=device)]
        return self.predictor.inference(torch.cat(logits), torch.cat(deltas), proposals, image_sizes), {}
