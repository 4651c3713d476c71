"""The box predictor of the R-CNN family: per-RoI class scores and class-specific box deltas.

Split out of the RoI head as torchvision's ``FastRCNNPredictor`` / Detectron2's
``FastRCNNOutputLayers``: it owns the two linear layers, their loss and their inference, so that
another predictor (R-CNN's per-class SVMs + ridge box regressors) can replace it behind the same
three methods::

    predictor(x) -> (logits (R, K), deltas (R, K, 4))              # x: (R, D) head features
    predictor.losses(logits, deltas, labels, box_targets) -> {"loss_classifier", "loss_box_reg"}
    predictor.inference(logits, deltas, proposals, image_sizes) -> B dicts boxes/labels/scores

Loss (Fast R-CNN §2.3): ``loss_classifier`` = cross-entropy averaged over the sampled RoIs;
``loss_box_reg`` = smooth-L1 (``beta = 1``) of the true class's deltas summed over foreground
RoIs and divided by the number of sampled RoIs (λ = 1). Box targets are normalised by (0.1, 0.1,
0.2, 0.2), i.e. ``BoxCoder`` weights (10, 10, 5, 5) — py-faster-rcnn's
``BBOX_NORMALIZE_TARGETS_PRECOMPUTED`` means 0 and stds (0.1, 0.1, 0.2, 0.2) — or, after
:meth:`FastRCNNPredictor.use_target_stats`, by per-class means and standard deviations of the
training set's targets (fast-rcnn's ``add_bbox_regression_targets``, ``visiontasks/detection/bbox_stats.py``):
the loss reads ``(t − μ_c) / σ_c`` and inference decodes ``δ · σ_c + μ_c`` with unit weights,
what fast-rcnn's ``train.py`` folds into ``bbox_pred`` when it snapshots.

Inference: softmax scores, per-class decoded boxes clipped to the image, background dropped,
scores > ``score_thresh`` (0.05), degenerate (zero-area) boxes dropped, per-class NMS
(``nms_thresh`` 0.3, ``batched_nms``), the ``detections_per_img`` (100) best kept.

Shape shorthand: R = RoIs, K = classes incl. background, D = head feature width, F = foreground RoIs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from visiontasks.detection.box_coder import BoxCoder

__all__ = ["FastRCNNPredictor", "select_detections"]


def select_detections(scores: torch.Tensor, boxes: torch.Tensor, counts: list[int],
                      image_sizes: list[tuple[int, int]], score_thresh: float, nms_thresh: float,
                      detections_per_img: int) -> list[dict]:
    """Per-class thresholding and NMS of scored class-specific boxes (shared by the predictors).

    Args:
        scores: (R, K) per-class scores (column 0 = background, ignored).
        boxes: (R, K, 4) class-specific boxes in input pixels.
        counts: RoIs per image (sums to R).
        image_sizes: B (h, w) for clipping.
        score_thresh: keep scores > this.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: most detections kept per image.

    Returns:
        B dicts ``boxes`` (N, 4), ``labels`` (N,) int64 in 1..K-1, ``scores`` (N,), scores descending.
    """
    k = scores.shape[1]
    results = []
    for s_i, b_i, size in zip(scores.split(counts), boxes.split(counts), image_sizes):
        b_i = clip_boxes_to_image(b_i, size)[:, 1:].reshape(-1, 4)
        s_i = s_i[:, 1:].reshape(-1)
        l_i = torch.arange(1, k, device=s_i.device).repeat(s_i.numel() // max(k - 1, 1))
        keep = torch.nonzero(s_i > score_thresh).squeeze(1)
        b_i, s_i, l_i = b_i[keep], s_i[keep], l_i[keep]
        keep = remove_small_boxes(b_i, 1e-2)
        b_i, s_i, l_i = b_i[keep], s_i[keep], l_i[keep]
        keep = batched_nms(b_i, s_i, l_i, nms_thresh)[:detections_per_img]
        results.append({"boxes": b_i[keep], "labels": l_i[keep], "scores": s_i[keep]})
    return results


class FastRCNNPredictor(nn.Module):
    """Softmax classifier + class-specific box regressor on (R, D) head features.

    Args:
        in_features: D.
        num_classes: K, background included.
        score_thresh: smallest score kept at test time.
        nms_thresh: per-class NMS threshold at test time.
        detections_per_img: most detections returned per image.
        bbox_weights: ``BoxCoder`` weights of the box targets.
        smooth_l1_beta: beta of the smooth-L1 box loss.
    """

    def __init__(self, in_features: int, num_classes: int, score_thresh: float = 0.05, nms_thresh: float = 0.3,
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
        self.num_classes = int(num_classes)
        self.cls_score = nn.Linear(in_features, self.num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 * self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.box_coder = BoxCoder(bbox_weights)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.target_stats = False

    def use_target_stats(self) -> None:
        """Switches to per-class target statistics (buffers ``bbox_means``, ``bbox_stds`` (K, 4),
        saved with the model; set them with :meth:`set_target_stats`); targets are encoded raw."""
        if not self.target_stats:
            self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0), self.box_coder.clip)
            self.register_buffer("bbox_means", torch.zeros(self.num_classes, 4))
            self.register_buffer("bbox_stds", torch.ones(self.num_classes, 4))
            self.target_stats = True

    @torch.no_grad()
    def set_target_stats(self, means: torch.Tensor, stds: torch.Tensor) -> None:
        """Sets the per-class means and standard deviations (K, 4) of the raw box targets."""
        if not self.target_stats:
            raise RuntimeError("call use_target_stats() first")
        means, stds = torch.as_tensor(means, dtype=torch.float32), torch.as_tensor(stds, dtype=torch.float32)
        if means.shape != self.bbox_means.shape or stds.shape != self.bbox_stds.shape or not bool((stds > 0).all()):
            raise ValueError(f"target statistics must be ({self.num_classes}, 4) with positive stds, "
                             f"got {tuple(means.shape)} and {tuple(stds.shape)}")
        self.bbox_means.copy_(means)
        self.bbox_stds.copy_(stds)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, D) → logits (R, K) and deltas (R, K, 4), in float32."""
        logits = self.cls_score(x).float()
        deltas = self.bbox_pred(x).float().view(-1, self.num_classes, 4)
        return logits, deltas

    def losses(self, logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor,
               box_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fast R-CNN's multi-task loss.

        Args:
            logits: (R, K).
            deltas: (R, K, 4).
            labels: (R,) int64, 0 = background; foreground rows in the order of ``box_targets``.
            box_targets: (F, 4) encoded targets of the foreground rows.
        """
        num = max(labels.numel(), 1)
        loss_cls = F.cross_entropy(logits, labels, reduction="sum") / num
        fg = torch.nonzero(labels > 0).squeeze(1)
        fg_deltas = deltas[fg, labels[fg]]
        if self.target_stats:
            box_targets = (box_targets - self.bbox_means[labels[fg]]) / self.bbox_stds[labels[fg]]
        loss_box = F.smooth_l1_loss(fg_deltas, box_targets, beta=self.smooth_l1_beta, reduction="sum") / num
        return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}

    @torch.no_grad()
    def inference(self, logits: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor],
                  image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Detections per image in input pixels (see the module docstring)."""
        scores = F.softmax(logits, dim=-1)
        if self.target_stats:
            deltas = deltas * self.bbox_stds + self.bbox_means
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))  # (R, K, 4)
        return select_detections(scores, boxes, [len(p) for p in proposals], image_sizes,
                                 self.score_thresh, self.nms_thresh, self.detections_per_img)
