"""Matching of anchors/RoIs to ground truth, and the balanced minibatch sampler.

Labels produced here: ``1`` foreground (the RPN) or the ground-truth class (the RoI head),
``0`` background, ``-1`` ignored (between the thresholds, or an anchor crossing the image
border). The sampler then draws at most ``batch_size_per_image`` labelled elements per image,
at most ``positive_fraction`` of them foreground; the rest are background, and when an image
lacks background the minibatch is simply smaller (py-faster-rcnn and torchvision do the same).

RPN (Ren et al. 2015, §3.1.2): positive if IoU ≥ 0.7 with some GT box, or if it has the highest
IoU with a GT box (ties included, IoU > 0); negative if IoU < 0.3 with every GT box.
RoI head (Girshick 2015, §2.3): foreground IoU ≥ 0.5, background IoU in [0.1, 0.5).

Shape shorthand: N = anchors or RoIs, G = ground-truth boxes of one image.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

__all__ = ["Matcher", "BalancedSampler", "IGNORE", "inside_image"]

#: Label of anchors/RoIs that contribute to no loss.
IGNORE = -1


class Matcher:
    """Assigns each of N boxes to its best ground-truth box and labels it by IoU.

    Args:
        fg_iou_thresh: IoU at or above which a box is foreground.
        bg_iou_thresh: IoU below which a box is background (if ≥ ``bg_iou_lo``).
        bg_iou_lo: smallest IoU a background box may have (0.1 in Fast R-CNN; 0 for the RPN).
        allow_low_quality: make the best box of every GT foreground too (ties included), as the RPN.
    """

    def __init__(self, fg_iou_thresh: float, bg_iou_thresh: float, bg_iou_lo: float = 0.0,
                 allow_low_quality: bool = False) -> None:
        if not 0.0 <= bg_iou_lo <= bg_iou_thresh <= fg_iou_thresh <= 1.0:
            raise ValueError(
                "need 0 <= bg_iou_lo <= bg_iou_thresh <= fg_iou_thresh <= 1, got "
                f"{bg_iou_lo!r}, {bg_iou_thresh!r}, {fg_iou_thresh!r}"
            )
        self.fg_iou_thresh = float(fg_iou_thresh)
        self.bg_iou_thresh = float(bg_iou_thresh)
        self.bg_iou_lo = float(bg_iou_lo)
        self.allow_low_quality = allow_low_quality

    def __call__(self, boxes: torch.Tensor, gt_boxes: torch.Tensor,
                 valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Matches ``boxes`` to ``gt_boxes``.

        Args:
            boxes: (N, 4) xyxy anchors or RoIs.
            gt_boxes: (G, 4) xyxy ground truth; G may be 0 (then every valid box is background).
            valid: optional (N,) bool; invalid boxes are labelled ``IGNORE`` and never matched
                (anchors crossing the border).

        Returns:
            ``(labels, matched)``: (N,) int64 in {1, 0, -1} and (N,) int64 index of the best GT
            (0 when G == 0; meaningful only where the label is 1).
        """
        n = boxes.shape[0]
        labels = torch.full((n,), IGNORE, dtype=torch.int64, device=boxes.device)
        if gt_boxes.shape[0] == 0:
            # No objects: everything is background, whatever ``bg_iou_lo`` (that bound keeps
            # background RoIs near objects; an empty image has none to be near).
            labels[:] = 0
            matched = torch.zeros((n,), dtype=torch.int64, device=boxes.device)
        else:
            iou = box_iou(gt_boxes.float(), boxes.float())  # (G, N)
            if valid is not None:
                iou = iou.masked_fill(~valid[None, :], -1.0)
            best_iou, matched = iou.max(dim=0)
            labels[(best_iou >= self.bg_iou_lo) & (best_iou < self.bg_iou_thresh)] = 0
            labels[best_iou >= self.fg_iou_thresh] = 1
            if self.allow_low_quality:
                best_per_gt = iou.max(dim=1, keepdim=True).values  # (G, 1)
                is_best = (iou == best_per_gt) & (best_per_gt > 0)
                # A box that is the best of several GTs keeps its own argmax (py-faster-rcnn).
                labels[is_best.any(dim=0)] = 1
        if valid is not None:
            labels[~valid] = IGNORE
        return labels, matched


class BalancedSampler:
    """Draws a fixed-size minibatch with a capped share of foreground (labels > 0).

    Args:
        batch_size_per_image: labelled elements drawn per image (256 RPN, 128 RoI head).
        positive_fraction: largest share of foreground (0.5 RPN, 0.25 RoI head).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if int(batch_size_per_image) <= 0:
            raise ValueError(f"batch_size_per_image must be positive, got {batch_size_per_image!r}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    def __call__(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples one image.

        Args:
            labels: (N,) int64, > 0 foreground, 0 background, < 0 ignored.

        Returns:
            ``(pos_idx, neg_idx)``: int64 indices into ``labels`` of the sampled foreground and
            background elements.
        """
        pos = torch.nonzero(labels > 0).squeeze(1)
        neg = torch.nonzero(labels == 0).squeeze(1)
        num_pos = min(pos.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(neg.numel(), self.batch_size_per_image - num_pos)
        pos = pos[torch.randperm(pos.numel(), device=pos.device)[:num_pos]]
        neg = neg[torch.randperm(neg.numel(), device=neg.device)[:num_neg]]
        return pos, neg


def inside_image(boxes: torch.Tensor, image_size: tuple[int, int], allowed_border: float = 0.0) -> torch.Tensor:
    """Which boxes lie inside the image (py-faster-rcnn's anchor_target_layer ``inds_inside``).

    Args:
        boxes: (N, 4) xyxy.
        image_size: (h, w) of the (resized, unpadded) image.
        allowed_border: how far a box may stick out, in pixels.

    Returns:
        (N,) bool.
    """
    h, w = image_size
    return ((boxes[:, 0] >= -allowed_border) & (boxes[:, 1] >= -allowed_border)
            & (boxes[:, 2] <= w + allowed_border) & (boxes[:, 3] <= h + allowed_border))
