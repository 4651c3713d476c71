"""Fast R-CNN (Girshick 2015): a ``TwoStageDetector`` fed precomputed proposals.

The same class as Faster R-CNN with :class:`PrecomputedProposals` instead of the RPN
(Detectron2's ``PrecomputedProposals`` / ``load_proposals_into_dataset``): proposals travel with
each sample (``data.proposals`` names a directory made by ``tools/propose.py``; the dataset puts
them in ``target["proposals"]``, flipped and resized with the image), and ``predict()`` on a new
image computes them with the method the model names in ``proposer`` (selective search, fast
mode, by default).

Paper settings (defaults): single scale 600 (max 1000), RoI max pooling 7×7, hierarchical
sampling N = 2 images × 64 RoIs (R = 128; set ``train.batch_size: 2``), 25 % foreground
(IoU ≥ 0.5), background IoU in [0.1, 0.5), multi-task loss with λ = 1 and smooth L1, targets
normalised by (0.1, 0.1, 0.2, 0.2), test NMS 0.3. ``pooler: spp`` gives SPP-net's pyramid
instead (see ``visiontasks/detection/spp.py``).
"""
from __future__ import annotations

from typing import Any, Sequence

from visiontasks.backbones import build_backbone
from visiontasks.detection.proposals import DEFAULT_PROPOSER, PrecomputedProposals, proposal_params
from visiontasks.detection.roi_head import build_roi_head
from visiontasks.detection.svd import compress_fc
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.registry import register_model

__all__ = ["fast_rcnn"]


@register_model("fast_rcnn", task="detection")
def fast_rcnn(
    num_classes: int = 21,
    backbone: str = "vgg16",
    pretrained_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    min_size: int | Sequence[int] = 600,
    max_size: int = 1000,
    proposer: dict[str, Any] | None = None,
    proposal_min_size: float = 0.0,
    max_proposals: int | None = 2000,
    pooler: str = "roi_pool",
    pooler_levels: Sequence[int] | None = None,
    roi_batch_size_per_image: int = 64,
    roi_positive_fraction: float = 0.25,
    roi_fg_iou_thresh: float = 0.5,
    roi_bg_iou_lo: float = 0.1,
    box_smooth_l1_beta: float = 1.0,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.3,
    box_detections_per_img: int = 100,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
) -> TwoStageDetector:
    """Builds Fast R-CNN.

    Args:
        num_classes: K, background included (21 for VOC).
        backbone: a registered backbone name ("vgg16", "alexnet", "resnet50", "resnet18", "small").
        pretrained_backbone: load the backbone's ImageNet weights (offline, from the hub cache).
        backbone_kwargs: extra keyword arguments of the backbone builder.
        min_size: shorter input side (a list: multi-scale training, the last at test).
        max_size: cap on the longer input side.
        proposer: how proposals are made, a dict with ``method`` and its parameters (default
            selective search, fast mode); proposal files made otherwise are refused.
        proposal_min_size: drop proposals with a side below this (original pixels).
        max_proposals: keep at most this many proposals per image, in their ranked order.
        pooler: "roi_pool" (the paper), "roi_align" or "spp".
        pooler_levels: pyramid levels of "spp".
        roi_batch_size_per_image: RoIs sampled per image (64 × 2 images = the paper's 128).
        roi_positive_fraction: largest share of foreground RoIs.
        roi_fg_iou_thresh: RoIs with IoU ≥ this are foreground.
        roi_bg_iou_lo: RoIs with IoU in [this, roi_fg_iou_thresh) are background.
        box_smooth_l1_beta: smooth-L1 beta of the box loss.
        box_score_thresh: test-time score threshold.
        box_nms_thresh: test-time per-class NMS threshold.
        box_detections_per_img: most detections per image.
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name.

    Returns:
        The detector (``TwoStageDetector`` with ``PrecomputedProposals``).
    """
    params = proposal_params(**{**DEFAULT_PROPOSER, **(proposer or {})})
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    roi_head = build_roi_head(
        body, num_classes, pooler, pooler_levels, batch_size_per_image=roi_batch_size_per_image,
        positive_fraction=roi_positive_fraction, fg_iou_thresh=roi_fg_iou_thresh, bg_iou_lo=roi_bg_iou_lo,
        score_thresh=box_score_thresh, nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img,
        smooth_l1_beta=box_smooth_l1_beta,
    )
    transform = build_transform("resize", min_size, max_size, size_divisible=body.stride)
    model = TwoStageDetector(body, PrecomputedProposals(proposal_min_size, max_proposals), roi_head, transform,
                            loss_weights=loss_weights, proposal_params=params)
    return compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model
