"""The Fast R-CNN RoI head (Girshick 2015, §2): pooler → fc6/fc7 → class scores + class-specific boxes.

Training (§2.3): ground-truth boxes are added to the proposals; per image 128 RoIs are sampled,
at most 25 % foreground (IoU ≥ 0.5, labelled with the GT class) and the rest background
(IoU in [bg_iou_lo = 0.1, 0.5), label 0). Losses: ``loss_classifier`` = cross-entropy averaged
over the sampled RoIs; ``loss_box_reg`` = smooth-L1 (``beta = 1``, the paper's; λ = 1) of the
true class's deltas, summed over foreground RoIs and divided by the number of sampled RoIs.
Box targets are normalised by (0.1, 0.1, 0.2, 0.2), i.e. ``BoxCoder`` weights (10, 10, 5, 5).

Test: softmax scores, per-class decoded boxes clipped to the image, background dropped,
scores > ``score_thresh`` (0.05), degenerate (zero-area) boxes dropped, per-class NMS
(``nms_thresh`` 0.3, ``batched_nms``), the ``detections_per_img`` (100) best kept.

Shape shorthand: R = RoIs, K = classes incl. background, D = head feature width, G = GT boxes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from visiontasks.detection.box_coder import BoxCoder
from visiontasks.detection.poolers import RoIPooler
from visiontasks.detection.sampling import BalancedSampler, Matcher

__all__ = ["RoIHead"]


class RoIHead(nn.Module):
    """Pooler + per-RoI network + classifier and class-specific box regressor.

    Args:
        pooler: the RoI pooler (features, proposals, image sizes) → pooled features.
        box_head: maps pooled features to (R, D) (VGG16's fc6/fc7 from ``backbone.box_head()``).
        head_dim: D.
        num_classes: K, background included.
        batch_size_per_image: RoIs sampled per image in training.
        positive_fraction: largest share of foreground RoIs.
        fg_iou_thresh: foreground IoU threshold.
        bg_iou_lo: lower IoU bound of background RoIs (upper bound: ``fg_iou_thresh``).
        score_thresh: smallest score kept at test time.
        nms_thresh: per-class NMS threshold at test time.
        detections_per_img: most detections returned per image.
        bbox_weights: ``BoxCoder`` weights of the box targets.
        smooth_l1_beta: beta of the smooth-L1 box loss.
    """

    def __init__(self, pooler: RoIPooler, box_head: nn.Module, head_dim: int, num_classes: int,
                 batch_size_per_image: int = 128, positive_fraction: float = 0.25, fg_iou_thresh: float = 0.5,
                 bg_iou_lo: float = 0.1, score_thresh: float = 0.05, nms_thresh: float = 0.3,
                 detections_per_img: int = 100, bbox_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0),
                 smooth_l1_beta: float = 1.0) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes!r}")
        if not 0.0 <= score_thresh < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1), got {score_thresh!r}")
        if not 0.0 < nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {nms_thresh!r}")
        if int(detections_per_img) <= 0:
            raise ValueError(f"detections_per_img must be positive, got {detections_per_img!r}")
        self.pooler = pooler
        self.box_head = box_head
        self.num_classes = int(num_classes)
        self.cls_score = nn.Linear(head_dim, self.num_classes)
        self.bbox_pred = nn.Linear(head_dim, 4 * self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.box_coder = BoxCoder(bbox_weights)
        self.matcher = Matcher(fg_iou_thresh, fg_iou_thresh, bg_iou_lo)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.smooth_l1_beta = float(smooth_l1_beta)

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Classifies and refines the proposals.

        Args:
            features: (B, C, H, W) backbone features.
            proposals: B tensors (R_i, 4) xyxy in input pixels (no gradient).
            image_sizes: B (h, w) of the resized, unpadded inputs.
            targets: per image ``boxes`` (G, 4) in input pixels and ``labels`` (G,); training only.

        Returns:
            ``(detections, losses)``: in training ``([], {"loss_classifier", "loss_box_reg"})``; in
            eval B dicts ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,) in input pixels, and ``{}``.
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            rois, labels, box_targets = self._sample(proposals, targets)
            logits, deltas = self._predict(features, rois, image_sizes)
            return [], self._losses(logits, deltas, labels, box_targets)
        logits, deltas = self._predict(features, proposals, image_sizes)
        return self._postprocess(logits, deltas, proposals, image_sizes), {}

    def _predict(self, features: torch.Tensor, rois: list[torch.Tensor],
                 image_sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.box_head(self.pooler(features, rois, image_sizes))
        logits = self.cls_score(x).float()
        deltas = self.bbox_pred(x).float().view(-1, self.num_classes, 4)
        return logits, deltas

    @torch.no_grad()
    def _sample(self, proposals: list[torch.Tensor], targets: list[dict]
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
            box_targets.append(self.box_coder.encode(gt[matched[pos]], props[pos]))
        return rois, torch.cat(labels), torch.cat(box_targets)

    def _losses(self, logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor,
                box_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        num = max(labels.numel(), 1)
        loss_cls = F.cross_entropy(logits, labels, reduction="sum") / num
        # Foreground rows (label > 0) come in the same order as ``box_targets``.
        fg = torch.nonzero(labels > 0).squeeze(1)
        fg_deltas = deltas[fg, labels[fg]]
        loss_box = F.smooth_l1_loss(fg_deltas, box_targets, beta=self.smooth_l1_beta, reduction="sum") / num
        return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}

    @torch.no_grad()
    def _postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor],
                     image_sizes: list[tuple[int, int]]) -> list[dict]:
        k = self.num_classes
        counts = [len(p) for p in proposals]
        scores = F.softmax(logits, dim=-1)
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))  # (R, K, 4)
        results = []
        for s_i, b_i, size in zip(scores.split(counts), boxes.split(counts), image_sizes):
            b_i = clip_boxes_to_image(b_i, size)[:, 1:].reshape(-1, 4)
            s_i = s_i[:, 1:].reshape(-1)
            l_i = torch.arange(1, k, device=s_i.device).repeat(s_i.numel() // (k - 1))
            keep = torch.nonzero(s_i > self.score_thresh).squeeze(1)
            b_i, s_i, l_i = b_i[keep], s_i[keep], l_i[keep]
            keep = remove_small_boxes(b_i, 1e-2)
            b_i, s_i, l_i = b_i[keep], s_i[keep], l_i[keep]
            keep = batched_nms(b_i, s_i, l_i, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": b_i[keep], "labels": l_i[keep], "scores": s_i[keep]})
        return results
