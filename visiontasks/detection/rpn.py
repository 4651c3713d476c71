"""The Region Proposal Network (Ren et al. 2015, §3.1) and its losses.

Head: a 3×3 conv (512 channels for VGG16; the backbone's width by default) + ReLU, then two
sibling 1×1 convs: objectness and 4A box deltas (``BoxCoder`` weights (1, 1, 1, 1)).

Objectness, ``objectness="softmax"`` (default): 2A channels, a two-class softmax per anchor as
in the paper and py-faster-rcnn (channels [0, A) background, [A, 2A) object), so that the
parameter count is the paper's. A two-way softmax equals a sigmoid of the logit difference,
``softmax(b, f)[1] = sigmoid(f − b)``, and its cross-entropy equals the binary cross-entropy
of ``f − b``; we therefore reduce the pair to that difference at once and share one code path
(ranking, BCE loss) with ``objectness="sigmoid"`` (A channels, logistic regression, the
alternative the paper mentions and torchvision's choice: same model family, half the weights).

Proposals: top ``pre_nms_top_n`` anchors by objectness (12000 train / 6000 test), decode, clip
to the image, drop boxes smaller than ``min_size × scale`` (py-faster-rcnn's ``RPN_MIN_SIZE``
of 16 px in original-image pixels, converted to the resized input), NMS 0.7, keep the top
``post_nms_top_n`` (2000 / 300). Proposals carry no gradient (approximate joint training).

Losses (py-faster-rcnn's anchor_target_layer): 256 anchors per image, ≤ 50 % positive,
cross-boundary anchors ignored unless ``allow_border``; ``loss_objectness`` = mean BCE over the
sampled anchors; ``loss_rpn_box_reg`` = smooth-L1 with ``beta = 1/9`` (py-faster-rcnn's
``sigma = 3``, ``beta = 1/sigma²``) summed over positives and divided by the number of sampled
anchors of the batch.

Shape shorthand: B = images, A = anchors per position, H×W = feature map, N = H·W·A.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import clip_boxes_to_image, nms, remove_small_boxes

from visiontasks.detection.anchors import AnchorGenerator
from visiontasks.detection.box_coder import BoxCoder
from visiontasks.detection.sampling import BalancedSampler, Matcher, inside_image

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """3×3 conv + ReLU, then 1×1 objectness and 1×1 box-delta convs.

    Args:
        in_channels: channels of the backbone feature map.
        mid_channels: channels of the 3×3 conv (512 in the paper's VGG16 model).
        num_anchors: A.
        objectness: "softmax" (2A outputs, the paper) or "sigmoid" (A outputs).
    """

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int, objectness: str = "softmax") -> None:
        super().__init__()
        if objectness not in ("softmax", "sigmoid"):
            raise ValueError(f"objectness must be 'softmax' or 'sigmoid', got {objectness!r}")
        self.objectness = objectness
        self.num_anchors = num_anchors
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid_channels, num_anchors * (2 if objectness == "softmax" else 1), 1)
        self.bbox_pred = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            features: (B, C, H, W).

        Returns:
            ``(logits, deltas)``: (B, N) object-vs-background logits and (B, N, 4) deltas, in the
            anchor order of :class:`AnchorGenerator`.
        """
        t = F.relu(self.conv(features))
        logits = self.cls_logits(t)
        b, _, h, w = logits.shape
        a = self.num_anchors
        if self.objectness == "softmax":
            pair = logits.view(b, 2, a, h, w)
            logits = pair[:, 1] - pair[:, 0]
        logits = logits.permute(0, 2, 3, 1).reshape(b, -1)
        deltas = self.bbox_pred(t).view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors + head + proposal selection + training losses; the ``proposer`` of a two-stage detector.

    Args:
        in_channels: channels of the backbone feature map.
        anchor_generator: the anchors (its stride must be the backbone's).
        mid_channels: width of the 3×3 conv (default ``in_channels``).
        objectness: "softmax" or "sigmoid" (see the module docstring).
        pre_nms_top_n: (train, test) boxes kept before NMS.
        post_nms_top_n: (train, test) proposals kept after NMS.
        nms_thresh: NMS IoU threshold.
        fg_iou_thresh: anchors at or above this IoU are positive.
        bg_iou_thresh: anchors below this IoU are negative.
        batch_size_per_image: anchors sampled per image.
        positive_fraction: largest share of positives in that sample.
        min_size: smallest proposal side, in original-image pixels.
        allow_border: keep anchors that cross the image border in training (the paper ignores them).
        smooth_l1_beta: beta of the smooth-L1 box loss.
    """

    def __init__(self, in_channels: int, anchor_generator: AnchorGenerator, mid_channels: int | None = None,
                 objectness: str = "softmax", pre_nms_top_n: tuple[int, int] = (12000, 6000),
                 post_nms_top_n: tuple[int, int] = (2000, 300), nms_thresh: float = 0.7,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, min_size: float = 16.0, allow_border: bool = False,
                 smooth_l1_beta: float = 1.0 / 9) -> None:
        super().__init__()
        for name, pair in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if len(pair) != 2 or any(int(n) <= 0 for n in pair):
                raise ValueError(f"{name} must be two positive integers (train, test), got {pair!r}")
        if not 0.0 < nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {nms_thresh!r}")
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size!r}")
        self.anchor_generator = anchor_generator
        self.head = RPNHead(in_channels, mid_channels or in_channels, anchor_generator.num_anchors, objectness)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, 0.0, allow_low_quality=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = (int(pre_nms_top_n[0]), int(pre_nms_top_n[1]))
        self.post_nms_top_n = (int(post_nms_top_n[0]), int(post_nms_top_n[1]))
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)
        self.allow_border = bool(allow_border)
        self.smooth_l1_beta = float(smooth_l1_beta)

    def forward(self, images: ImageList, features: torch.Tensor, targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None,
                scales: Sequence[float] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposes regions (and, in training, computes the RPN losses).

        Args:
            images: the batched input (``image_sizes`` are the resized, unpadded sizes).
            features: (B, C, H, W) backbone features.
            targets: per image ``boxes`` (G, 4) in input pixels; required in training.
            proposals: must be None (the RPN makes its own).
            scales: per image, input pixels per original pixel (default 1).

        Returns:
            ``(proposals, losses)``: B tensors (R_i, 4) in input pixels, best first, and
            ``{"loss_objectness", "loss_rpn_box_reg"}`` in training (else ``{}``).
        """
        if proposals is not None:
            raise ValueError("the RPN computes its own proposals; pass proposals=None "
                             "(precomputed proposals need the PrecomputedProposals proposer)")
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(features.shape[-2:], features.device)
        if scales is None:
            scales = [1.0] * len(images.image_sizes)
        boxes = self._select(logits.detach().float(), deltas.detach(), anchors, images.image_sizes, scales)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            losses = self._losses(logits, deltas, anchors, images.image_sizes, targets)
        return boxes, losses

    @torch.no_grad()
    def _select(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                image_sizes: list[tuple[int, int]], scales: Sequence[float]) -> list[torch.Tensor]:
        mode = 0 if self.training else 1
        k = min(self.pre_nms_top_n[mode], logits.shape[1])
        top_logits, top_idx = logits.topk(k, dim=1)  # (B, k), sorted
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        boxes = self.box_coder.decode(deltas[rows, top_idx].reshape(-1, 4), anchors[top_idx].reshape(-1, 4))
        boxes = boxes.view(logits.shape[0], k, 4)
        out = []
        for b_i, s_i, size, scale in zip(boxes, top_logits, image_sizes, scales):
            b_i = clip_boxes_to_image(b_i, size)
            keep = remove_small_boxes(b_i, self.min_size * float(scale))
            b_i, s_i = b_i[keep], s_i[keep]
            keep = nms(b_i, s_i, self.nms_thresh)[: self.post_nms_top_n[mode]]
            out.append(b_i[keep])
        return out

    def _losses(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                image_sizes: list[tuple[int, int]], targets: list[dict]) -> dict[str, torch.Tensor]:
        sampled_logits, sampled_labels, pos_deltas, pos_targets = [], [], [], []
        for i, (size, target) in enumerate(zip(image_sizes, targets)):
            gt = target["boxes"].to(anchors)
            valid = None if self.allow_border else inside_image(anchors, size)
            labels, matched = self.matcher(anchors, gt, valid)
            pos, neg = self.sampler(labels)
            idx = torch.cat((pos, neg))
            sampled_logits.append(logits[i, idx])
            sampled_labels.append((labels[idx] > 0).to(torch.float32))
            pos_deltas.append(deltas[i, pos])
            pos_targets.append(self.box_coder.encode(gt[matched[pos]], anchors[pos]))
        sampled = torch.cat(sampled_logits).float()
        num = max(sampled.numel(), 1)
        loss_obj = F.binary_cross_entropy_with_logits(sampled, torch.cat(sampled_labels), reduction="sum") / num
        loss_box = F.smooth_l1_loss(torch.cat(pos_deltas).float(), torch.cat(pos_targets),
                                    beta=self.smooth_l1_beta, reduction="sum") / num
        return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}
