"""The Fast R-CNN RoI head (Girshick 2015, §2): pooler → box head → box predictor.

Training (§2.3): ground-truth boxes are added to the proposals; per image
``settings.batch_size_per_image`` RoIs are sampled, at most ``positive_fraction`` foreground
(IoU ≥ ``fg_iou_thresh``, labelled with the GT class) and the rest background (IoU in
[``bg_iou_lo``, ``fg_iou_thresh``), label 0) — :class:`~visiontasks.detection.settings.RoIHeadSettings`,
whose defaults are Fast R-CNN's 128 / 25 % / 0.5 / 0.1; the predictor computes the loss on them
(``visiontasks/detection/predictor.py``). Test: every proposal is scored by the predictor.

Three replaceable parts, as torchvision's ``RoIHeads`` (``box_roi_pool``, ``box_head``,
``box_predictor``): the pooler says its output width (``pooler.output_dim(C)``), the box head
is built for that width (:func:`build_roi_head`), and the predictor maps head features to
scores and boxes.

Shape shorthand: B = images, R = RoIs, K = classes incl. background, D = head feature width,
G = GT boxes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from visiontasks.detection.predictor import FastRCNNPredictor
from visiontasks.detection.sampling import BalancedSampler, Matcher
from visiontasks.detection.settings import RoIHeadSettings, TestSettings
from visiontasks.precision import LOW_PRECISION_OUTPUT

__all__ = ["RoIHead", "build_roi_head", "build_predictor"]


class RoIHead(nn.Module):
    """Pooler + per-RoI network + predictor, with Fast R-CNN's RoI sampling in training.

    Args:
        pooler: ``pooler(features, proposals, image_sizes)`` → pooled features, with ``output_dim``.
        box_head: maps pooled features to (R, D) (e.g. VGG16's fc6/fc7 from ``backbone.box_head(width)``).
        predictor: ``FastRCNNPredictor`` (or anything with the same ``forward``/``losses``/``inference``
            and a ``box_coder`` for the training targets).
        settings: the RoI sampling (batch size, foreground share, IoU thresholds); its
            ``smooth_l1_beta`` belongs to the predictor, which the builder gives it.
    """

    def __init__(self, pooler: nn.Module, box_head: nn.Module, predictor: nn.Module,
                 settings: RoIHeadSettings = RoIHeadSettings()) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        # Under fp32_boundaries pooler and box head keep bf16 outputs: only the next layer reads
        # them (the predictor's outputs are float32); issue 24.
        setattr(self.box_head, LOW_PRECISION_OUTPUT, True)
        self.predictor = predictor
        self.settings = settings
        self.matcher = Matcher(settings.fg_iou_thresh, settings.fg_iou_thresh, settings.bg_iou_lo)
        self.sampler = BalancedSampler(settings.batch_size_per_image, settings.positive_fraction)

    @property
    def num_classes(self) -> int:
        return self.predictor.num_classes

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Checkpoints written before the predictor was split out keep cls_score/bbox_pred here.
        for name in ("cls_score", "bbox_pred"):
            for kind in ("weight", "bias"):
                old = f"{prefix}{name}.{kind}"
                if old in state_dict:
                    state_dict[f"{prefix}predictor.{name}.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, features: torch.Tensor, rois: list[torch.Tensor],
                 image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Head features (R, D) of the given RoIs (pooler → box head)."""
        return self.box_head(self.pooler(features, rois, image_sizes))

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Classifies and refines the proposals.

        Args:
            features: (B, C, H, W) backbone features.
            proposals: B tensors (R_i, 4) xyxy in input pixels (no gradient).
            image_sizes: B (h, w) of the resized, unpadded inputs.
            targets: per image ``boxes`` (G, 4) in input pixels and ``labels`` (G,); training only.

        Returns:
            ``(detections, losses)``: in training ``([], predictor losses)``; in eval B dicts
            ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,) in input pixels, and ``{}``.
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            rois, labels, box_targets = self.sample(proposals, targets)
            logits, deltas = self.predictor(self.features(features, rois, image_sizes))
            return [], self.predictor.losses(logits, deltas, labels, box_targets)
        logits, deltas = self.predictor(self.features(features, proposals, image_sizes))
        return self.predictor.inference(logits, deltas, proposals, image_sizes), {}

    @torch.no_grad()
    def sample(self, proposals: list[torch.Tensor], targets: list[dict]
               ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Per image: foreground RoIs first, then background. Returns the RoIs of each image,
        their class labels (R,) and the box targets of the foreground ones (F, 4), in order."""
        rois, labels, box_targets = [], [], []
        for props, target in zip(proposals, targets):
            gt = target["boxes"].to(props)
            gt_labels = target["labels"].to(device=props.device, dtype=torch.int64)
            props = torch.cat((props, gt))
            match, matched = self.matcher(props, gt)
            pos, neg = self.sampler(match)
            rois.append(torch.cat((props[pos], props[neg])))
            labels.append(torch.cat((gt_labels[matched[pos]], gt_labels.new_zeros(neg.numel()))))
            box_targets.append(self.predictor.box_coder.encode(gt[matched[pos]], props[pos]))
        return rois, torch.cat(labels), torch.cat(box_targets)


def build_roi_head(backbone: nn.Module, num_classes: int, pooler: str = "roi_pool",
                   pooler_levels: Sequence[int] | None = None, roi: RoIHeadSettings = RoIHeadSettings(),
                   test: TestSettings = TestSettings()) -> RoIHead:
    """The RoI head of a two-stage detector on ``backbone``: pooler, a box head sized from the
    pooler's width, and a ``FastRCNNPredictor`` (the Fast/Faster R-CNN and SPP-net builders share it).

    Args:
        backbone: gives ``stride``, ``out_channels``, ``pool_size`` and ``box_head(width)``.
        num_classes: K, background included.
        pooler: "roi_pool", "roi_align" (P = ``backbone.pool_size``) or "spp" (levels
            ``pooler_levels``, default (6, 3, 2, 1)).
        pooler_levels: the pyramid of "spp".
        roi: the RoI sampling and the box loss's beta.
        test: the predictor's test-time settings.

    Returns:
        The head (:class:`RoIHead`).
    """
    from visiontasks.detection.poolers import build_pooler
    from visiontasks.detection.spp import SPP_LEVELS

    if pooler == "spp":
        size = tuple(pooler_levels) if pooler_levels is not None else SPP_LEVELS
    elif pooler_levels is not None:
        raise ValueError(f"pooler_levels applies to pooler 'spp' only, got pooler={pooler!r}")
    else:
        size = backbone.pool_size
    roi_pooler = build_pooler(pooler, size, 1.0 / backbone.stride)
    head, head_dim = backbone.box_head(roi_pooler.output_dim(backbone.out_channels))
    predictor = build_predictor(head_dim, num_classes, roi, test)
    return RoIHead(roi_pooler, head, predictor, roi)


def build_predictor(in_features: int, num_classes: int, roi: RoIHeadSettings = RoIHeadSettings(),
                    test: TestSettings = TestSettings()) -> FastRCNNPredictor:
    """A ``FastRCNNPredictor`` with the box loss's beta of ``roi`` and the test settings ``test``."""
    return FastRCNNPredictor(in_features, num_classes, score_thresh=test.score_thresh, nms_thresh=test.nms_thresh,
                             detections_per_img=test.detections_per_img, smooth_l1_beta=roi.smooth_l1_beta)
