"""R-CNN (Girshick et al. 2014) composed on ``TwoStageDetector``, and its builder ``rcnn``.

The parts (no second detector class — :class:`RCNN` only adds the training stages and feature
extraction to ``TwoStageDetector``):

- transform: ``build_transform("none")`` — ImageNet normalisation and zero-padded batching at
  the original size, scale factor 1 (R-CNN warps regions, not images; the normalised mean colour is
  0, the warp's fill value);
- backbone slot: ``ImageAsFeatures`` (the "features" are the normalised image batch);
- proposer: ``PrecomputedProposals`` (selective search, fast mode, R-CNN's 500 px width; from
  ``data.proposals`` in training/evaluation, computed by ``predict()`` for a new image);
- RoI head: :class:`~visiontasks.detection.rcnn.head.RCNNHead` — a
  :class:`~visiontasks.detection.rcnn.warp.WarpedRegionPooler` (warp with 16 px context → CNN body
  → pool5), the backbone's fc6/fc7 (``backbone.box_head()``), and first a ``FastRCNNPredictor``
  for the softmax fine-tuning (its box loss has weight 0: ``loss_weights={"loss_box_reg": 0.0}``,
  R-CNN fine-tunes the classifier only), then the fitted
  :class:`~visiontasks.detection.rcnn.predictor.SVMBoxPredictor`.

Training (``RCNN.training_stages()``, run by ``tools/train_det.py``): ``finetune`` (SGD on warped
regions), ``features`` (fc7 + pool5 cache), ``svm`` (per-class SVMs, hard-negative mining),
``bbox_reg`` (per-class ridge regressors); see ``visiontasks/detection/rcnn/stages.py``.
``feature_precision: bf16`` runs the ``features`` stage's CNN (:meth:`RCNN.extract`) under bf16
autocast with channels-last crops, the path ``load_model(precision="bf16")`` gives ``predict()``;
the cache keeps its float16 format either way (fc7/pool5 are computed in bf16, 8 significant bits,
and float16's 11 hold them exactly within its range, at the disk cost the fp32 cache already has).
Measured by ``bench/rcnn_fast_path.py`` (docs/BENCHMARKS.md, "R-CNN and SPP-net in bf16").

Fine-tuning minibatches (paper §2.3, ``window_data_layer``): 128 regions, 32 foreground
(IoU ≥ 0.5 with a ground-truth box → its class; GT boxes are added to the proposals) and 96
background (IoU < 0.5, lower bound 0). Here a minibatch is ``train.batch_size`` images ×
``roi.batch_size_per_image`` regions with at most ``roi.positive_fraction`` = 25 % foreground per
image (``RCNN_ROI`` in ``visiontasks/detection/settings.py``), so the paper's 128/32 is e.g.
``batch_size: 2`` × 64 (16 fg each) or 4 × 32 (8 fg each).
R-CNN draws its 128 windows from all of the data set's images at once; more images per batch come
closer to that. When an image has fewer foreground regions, background fills the rest (as in
``RoIHead``). lr 0.001 (step ×0.1), momentum 0.9, weight decay 0.0005, Caffe's bias convention.

Shape shorthand: R = regions of an image, G = its ground-truth boxes, D = fc7 width, F = pool5 width.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from visiontasks.backbones import ImageAsFeatures, build_backbone
from visiontasks.detection.proposals import DEFAULT_PROPOSER, PrecomputedProposals, proposal_params
from visiontasks.detection.rcnn.head import RCNNHead
from visiontasks.detection.rcnn.warp import WarpedRegionPooler
from visiontasks.detection.roi_head import build_predictor
from visiontasks.detection.settings import (PAPER_TEST, RCNN_FIT, RCNN_RENAMED, RCNN_ROI, FitSettings, RoIHeadSettings,
                                            TestSettings, resolve)
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.precision import autocast, resolve_precision
from visiontasks.registry import register_model

__all__ = ["RCNN", "rcnn", "CROP_SIZES"]

#: The CNN input sizes: AlexNet 227 (the paper), VGG16 224; 112 for the small CPU backbone.
CROP_SIZES = {"alexnet": 227, "vgg16": 224, "small": 112}


class RCNN(TwoStageDetector):
    """``TwoStageDetector`` with R-CNN's training stages and region-feature extraction.

    Args:
        backbone, proposer, roi_head, transform, loss_weights, proposal_params: see ``TwoStageDetector``.
        fit_params: settings of the fitting stages, the fields of
            :class:`~visiontasks.detection.settings.FitSettings` as a dict (``svm_C``, ``neg_iou_thresh`` …).
        feature_precision: the precision of :meth:`extract` (the ``features`` stage): "fp32" or
            "bf16" (bf16 autocast, channels-last crops; fp32 with one warning line on a CPU
            without native bf16, as ``load_model(precision=)``).
    """

    def __init__(self, backbone: nn.Module, proposer: nn.Module, roi_head: RCNNHead, transform: nn.Module,
                 loss_weights: dict[str, float] | None, proposal_params: dict, fit_params: dict[str, float],
                 feature_precision: str = "fp32") -> None:
        super().__init__(backbone, proposer, roi_head, transform, loss_weights=loss_weights,
                         proposal_params=proposal_params)
        self.fit_params = dict(fit_params)
        resolve_precision(feature_precision)  # a bad value fails at build time (one line)
        self.feature_precision = feature_precision

    def training_stages(self) -> list[Any]:
        """``finetune`` (SGD, no evaluation), ``features``, ``svm``, ``bbox_reg``."""
        from visiontasks.detection.rcnn.stages import BoxRegressionStage, FeatureCacheStage, SVMStage
        from visiontasks.engine.stages import SGDStage

        return [SGDStage("finetune", evaluate=False), FeatureCacheStage(), SVMStage(), BoxRegressionStage()]

    @torch.no_grad()
    def extract(self, image: torch.Tensor, gt_boxes: torch.Tensor, proposals: torch.Tensor
                ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """fc7 and pool5 of an image's ground-truth boxes and its proposals (cleaned by the proposer).

        Args:
            image: (3, H, W) in [0, 1].
            gt_boxes: (G, 4) in image pixels.
            proposals: (R, 4) in image pixels, as stored.

        Returns:
            ``(boxes (G + R', 4) float32 CPU, fc7 (G + R', D) float16, pool5 (G + R', F) float16)``,
            the ground truth first, then the proposals kept by the proposer (clipped, small and
            surplus boxes dropped), in chunks of ``chunk_size`` regions. With ``feature_precision``
            "bf16" the CNN runs under bf16 autocast (one context per image, so autocast casts each
            fp32 weight once per image, not once per chunk) and the crops go in channels-last.
        """
        size = (int(image.shape[-2]), int(image.shape[-1]))
        dtype = resolve_precision(self.feature_precision, image.device)
        fc7s, pool5s = [], []
        with autocast(image.device, dtype):
            batch, _ = self.transform([image])
            features = self.backbone.feature_maps(batch)
            props = self.transform.resize_proposals([proposals.to(batch.tensors.device)], [size], [size])
            kept, _ = self.proposer(batch, features, None, props, self.transform.scale_factors([size], [size]))
            boxes = torch.cat((gt_boxes.to(batch.tensors.device).float().reshape(-1, 4), kept[0].float()))
            for fc7, pool5 in self.roi_head.region_features(features, [boxes], [size]):
                fc7s.append(fc7.float().cpu().numpy().astype(np.float16))
                pool5s.append(pool5.flatten(1).float().cpu().numpy().astype(np.float16))
        head = self.roi_head
        fc7 = np.concatenate(fc7s) if fc7s else np.zeros((0, head.fc7_dim), np.float16)
        pool5 = np.concatenate(pool5s) if pool5s else np.zeros((0, head.pool5_dim), np.float16)
        return boxes.cpu(), fc7, pool5


@register_model("rcnn", task="detection")
def rcnn(
    num_classes: int = 21,
    backbone: str = "alexnet",
    pretrained_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    crop_size: int | None = None,
    context_pad: int = 16,
    chunk_size: int = 128,
    proposer: dict[str, Any] | None = None,
    proposal_min_size: float = 0.0,
    max_proposals: int | None = None,
    roi: RoIHeadSettings | Mapping[str, Any] | None = RCNN_ROI,
    fit_params: FitSettings | Mapping[str, Any] | None = RCNN_FIT,
    test: TestSettings | Mapping[str, Any] | None = PAPER_TEST,
    loss_weights: dict[str, float] | None = None,
    feature_precision: str = "fp32",
) -> RCNN:
    """Builds R-CNN.

    Args:
        num_classes: K, background included (21 for VOC).
        backbone: "alexnet" (the paper), "vgg16" or "small" (any registered backbone with
            ``crop_size`` given).
        pretrained_backbone: load the backbone's ImageNet weights (offline, from the hub cache).
        backbone_kwargs: extra keyword arguments of the backbone builder (e.g. ``frozen_stages``).
        crop_size: side of the warped region (default 227 AlexNet, 224 VGG16, 112 small).
        context_pad: context pixels on each side of the warped region (16 in the paper).
        chunk_size: regions warped and run through the CNN at once.
        proposer: how proposals are made (``proposal_params`` keywords; default selective search,
            fast mode, 500 px wide, 20 px minimum side); proposal folders made otherwise are refused.
        proposal_min_size: drop proposals with a side below this (original pixels).
        max_proposals: keep at most this many proposals per image (None: all, as R-CNN).
        roi: fine-tuning sampling (overrides by name): 64 regions per image (× ``train.batch_size``
            2 = the paper's 128), ≤ 25 % foreground (IoU ≥ 0.5), background IoU in [0, 0.5); see
            :data:`~visiontasks.detection.settings.RCNN_ROI`.
        fit_params: the SVM and box-regression stages (overrides by name): liblinear C 0.001,
            positive weight 2, bias feature 10, hard-negative mining (2000, −1.0001, −1.2), features
            scaled to mean norm 20, SVM negatives IoU < 0.3, ridge λ 1000 on regions with IoU > 0.6;
            see :class:`~visiontasks.detection.settings.FitSettings`.
        test: per-class NMS 0.3, smallest reported score 0.05 (softmax probability while
            fine-tuning, ``sigmoid(margin)`` once the SVMs are fitted), 100 detections per image.
        loss_weights: multiplier per loss name; ``loss_box_reg`` defaults to 0 (no box loss in
            R-CNN's fine-tuning).
        feature_precision: "fp32" (default) or "bf16": the precision of the feature-cache stage's CNN
            (:meth:`RCNN.extract`); test-time precision is ``load_model(precision=)``'s.

    Returns:
        The detector (:class:`RCNN`).
    """
    if crop_size is None:
        if backbone not in CROP_SIZES:
            raise ValueError(f"give crop_size for backbone {backbone!r} (defaults exist for {sorted(CROP_SIZES)})")
        crop_size = CROP_SIZES[backbone]
    params = proposal_params(**{**DEFAULT_PROPOSER, **(proposer or {})})
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    pooler = WarpedRegionPooler(body, crop_size, context_pad, body.pool_size, chunk_size)
    pool5_dim = pooler.output_dim(body.out_channels)
    box_head, fc7_dim = body.box_head(pool5_dim)
    sampling = resolve(roi, RCNN_ROI, "roi")
    predictor = build_predictor(fc7_dim, num_classes, sampling, resolve(test, PAPER_TEST, "test"))
    head = RCNNHead(pooler, box_head, predictor, fc7_dim, pool5_dim, sampling)
    fit = resolve(fit_params, RCNN_FIT, "fit_params")
    transform = build_transform("none", size_divisible=1)
    return RCNN(ImageAsFeatures(), PrecomputedProposals(proposal_min_size, max_proposals), head, transform,
                loss_weights={"loss_box_reg": 0.0, **(loss_weights or {})}, proposal_params=params,
                fit_params=fit.as_dict(), feature_precision=feature_precision)


#: The flat arguments before the settings were grouped (translated in older checkpoints' configs).
rcnn.renamed_keys = RCNN_RENAMED
