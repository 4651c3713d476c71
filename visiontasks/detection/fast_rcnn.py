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
normalised by (0.1, 0.1, 0.2, 0.2) (``bbox_normalize: dataset``: the training set's per-class
means and stds, as the paper), test NMS 0.3 (the settings ``roi`` and ``test``:
:mod:`visiontasks.detection.settings`). ``pooler: spp`` gives SPP-net's pyramid
instead (see ``visiontasks/detection/spp.py``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from visiontasks.backbones import build_backbone
from visiontasks.detection.bbox_stats import BoxTargetStatsStage
from visiontasks.detection.proposals import DEFAULT_PROPOSER, PrecomputedProposals, proposal_params
from visiontasks.detection.roi_head import build_roi_head
from visiontasks.detection.settings import (FAST_RCNN_ROI, PAPER_TEST, RoIHeadSettings, TestSettings, resolve,
                                            two_stage_renamed)
from visiontasks.detection.svd import compress_fc
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.registry import register_model

__all__ = ["fast_rcnn", "FastRCNN", "BBOX_NORMALIZATIONS"]

#: ``bbox_normalize`` choices: py-faster-rcnn's fixed stds, or the training set's per-class statistics.
BBOX_NORMALIZATIONS = ("fixed", "dataset")


class FastRCNN(TwoStageDetector):
    """``TwoStageDetector`` whose training first computes the box-target statistics when its
    predictor uses them (``bbox_normalize: dataset``): stages ``bbox_stats`` → ``sgd``."""

    def training_stages(self) -> list[Any]:
        """``[BoxTargetStatsStage(), SGDStage()]`` with per-class statistics, else ``[SGDStage()]``."""
        from visiontasks.engine.stages import SGDStage

        if getattr(self.roi_head.predictor, "target_stats", False):
            return [BoxTargetStatsStage(), SGDStage()]
        return [SGDStage()]


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
    roi: RoIHeadSettings | Mapping[str, Any] | None = FAST_RCNN_ROI,
    test: TestSettings | Mapping[str, Any] | None = PAPER_TEST,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
    bbox_normalize: str = "fixed",
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
        roi: RoI sampling and box-loss beta (overrides by name): 64 RoIs per image (× 2 images =
            the paper's 128), ≤ 25 % foreground (IoU ≥ 0.5), background IoU in [0.1, 0.5); see
            :data:`~visiontasks.detection.settings.FAST_RCNN_ROI`.
        test: score threshold 0.05, per-class NMS 0.3, 100 detections (:class:`TestSettings`).
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name.
        bbox_normalize: "fixed" (default: targets divided by (0.1, 0.1, 0.2, 0.2), means 0 —
            py-faster-rcnn's ``BBOX_NORMALIZE_TARGETS_PRECOMPUTED``; no pass over the data, the
            predictor every box head here shares, and older checkpoints load unchanged) or "dataset"
            (the paper's §2.3 and fast-rcnn's ``add_bbox_regression_targets``: per-class means and
            stds of the training set, computed by the ``bbox_stats`` stage before SGD and kept in
            the checkpoint; ``visiontasks/detection/bbox_stats.py``).

    Returns:
        The detector (``TwoStageDetector`` with ``PrecomputedProposals``).
    """
    if bbox_normalize not in BBOX_NORMALIZATIONS:
        raise ValueError(f"bbox_normalize must be one of {', '.join(BBOX_NORMALIZATIONS)}, got {bbox_normalize!r}")
    params = proposal_params(**{**DEFAULT_PROPOSER, **(proposer or {})})
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    roi_head = build_roi_head(body, num_classes, pooler, pooler_levels, roi=resolve(roi, FAST_RCNN_ROI, "roi"),
                              test=resolve(test, PAPER_TEST, "test"))
    transform = build_transform("resize", min_size, max_size, size_divisible=body.stride)
    if bbox_normalize == "dataset":
        roi_head.predictor.use_target_stats()
    model = FastRCNN(body, PrecomputedProposals(proposal_min_size, max_proposals), roi_head, transform,
                     loss_weights=loss_weights, proposal_params=params)
    return compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model


#: The flat arguments before the settings were grouped (translated in older checkpoints' configs).
fast_rcnn.renamed_keys = two_stage_renamed()
