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

Settings: :class:`~visiontasks.detection.settings.RPNSettings` (values below are its defaults).

Proposals: top ``pre_nms_top_n`` anchors by objectness (12000 train / 6000 test), decode, clip
to the image, drop boxes smaller than ``min_size × scale`` (py-faster-rcnn's ``RPN_MIN_SIZE``
of 16 px in original-image pixels, converted to the resized input), NMS 0.7, keep the top
``post_nms_top_n`` (2000 / 300); at test the NMS runs on the best ``4 × post_nms_top_n`` boxes when they
suffice (:func:`~visiontasks.detection.topn_nms.topn_nms`: the same boxes). Proposals carry no gradient
(approximate joint training).

Losses (py-faster-rcnn's anchor_target_layer): 256 anchors per image, ≤ 50 % positive,
cross-boundary anchors ignored unless ``allow_border``; ``loss_objectness`` = mean BCE over the
sampled anchors; ``loss_rpn_box_reg`` = smooth-L1 with ``beta = 1/9`` (py-faster-rcnn's
``sigma = 3``, ``beta = 1/sigma²``) summed over positives and divided by the number of sampled
anchors of the batch. That is py-faster-rcnn's weighting (``loss_weighting="py-faster-rcnn"``,
the default): ``stage1_rpn_train.pt`` (models/pascal_voc/VGG16/faster_rcnn_alt_opt, l. 445-470)
gives both losses ``loss_weight: 1``, and ``anchor_target_layer.py`` (l. 180-185) sets every
sampled anchor's ``bbox_outside_weights`` to ``1 / num_examples``.

``loss_weighting="paper"`` is the paper's equation 1 instead: ``L = (1/N_cls) Σ L_cls +
λ (1/N_reg) Σ p* L_reg`` with ``N_cls = batch_size_per_image`` (256, the mini-batch size, even
when fewer anchors could be sampled), ``N_reg`` the image's anchor locations (``⌈h/s⌉·⌈w/s⌉``
feature-map positions of its resized size: 38·63 = 2394 ≈ 2,400 for a 600×1000 VGG16 input) and
``λ = loss_lambda`` (10). Each image is normalised by its own numbers and the terms are averaged
over the images (the paper's mini-batch is one image). The paper's ``R`` is Fast R-CNN's smooth L1
(``beta = 1``); ``smooth_l1_beta`` stays a separate setting.

Shape shorthand: B = images, A = anchors per position, H×W = feature map, N = H·W·A.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from visiontasks.detection.anchors import AnchorGenerator
from visiontasks.detection.box_coder import BoxCoder
from visiontasks.detection.sampling import BalancedSampler, Matcher, inside_image
from visiontasks.detection.settings import LOSS_WEIGHTINGS, RPNSettings
from visiontasks.detection.topn_nms import topn_nms
from visiontasks.precision import LOW_PRECISION_OUTPUT

__all__ = ["RPNHead", "RegionProposalNetwork", "LOSS_WEIGHTINGS"]


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
        # Under fp32_boundaries the 3×3 conv keeps its bf16 output: only the 1×1 convs read it (their
        # outputs, the logits and deltas, are still cast to float32); issue 24.
        setattr(self.conv, LOW_PRECISION_OUTPUT, True)
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
        settings: matching, sampling, proposal selection and box-loss settings
            (:class:`~visiontasks.detection.settings.RPNSettings`, py-faster-rcnn's by default).
    """

    def __init__(self, in_channels: int, anchor_generator: AnchorGenerator, mid_channels: int | None = None,
                 objectness: str = "softmax", settings: RPNSettings = RPNSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.anchor_generator = anchor_generator
        self.head = RPNHead(in_channels, mid_channels or in_channels, anchor_generator.num_anchors, objectness)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(settings.fg_iou_thresh, settings.bg_iou_thresh, 0.0, allow_low_quality=True)
        self.sampler = BalancedSampler(settings.batch_size_per_image, settings.positive_fraction)
        self.pre_nms_top_n = (settings.pre_nms_top_n_train, settings.pre_nms_top_n_test)
        self.post_nms_top_n = (settings.post_nms_top_n_train, settings.post_nms_top_n_test)
        self.nms_thresh = settings.nms_thresh
        self.min_size = settings.min_size
        self.allow_border = settings.allow_border
        self.smooth_l1_beta = settings.smooth_l1_beta
        self.loss_weighting = settings.loss_weighting
        self.loss_lambda = settings.loss_lambda

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
            keep = topn_nms(b_i, s_i, self.nms_thresh, self.post_nms_top_n[mode])  # = nms(...)[:post_nms_top_n]
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
        if self.loss_weighting == "paper":
            return self._paper_losses(sampled_logits, sampled_labels, pos_deltas, pos_targets, image_sizes)
        sampled = torch.cat(sampled_logits).float()
        num = max(sampled.numel(), 1)
        loss_obj = F.binary_cross_entropy_with_logits(sampled, torch.cat(sampled_labels), reduction="sum") / num
        loss_box = F.smooth_l1_loss(torch.cat(pos_deltas).float(), torch.cat(pos_targets),
                                    beta=self.smooth_l1_beta, reduction="sum") / num
        return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}

    def _paper_losses(self, logits: list[torch.Tensor], labels: list[torch.Tensor], deltas: list[torch.Tensor],
                      targets: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """Equation 1 of Ren et al. per image (N_cls = batch_size_per_image, N_reg = anchor
        locations ⌈h/s⌉·⌈w/s⌉, weight λ), averaged over the B images."""
        stride = self.anchor_generator.stride
        n_cls = float(self.sampler.batch_size_per_image)
        loss_obj = loss_box = logits[0].new_zeros((), dtype=torch.float32)
        for lg, lb, d, t, (h, w) in zip(logits, labels, deltas, targets, image_sizes):
            n_reg = float(-(-int(h) // stride) * -(-int(w) // stride))
            loss_obj = loss_obj + F.binary_cross_entropy_with_logits(lg.float(), lb, reduction="sum") / n_cls
            loss_box = loss_box + self.loss_lambda * F.smooth_l1_loss(
                d.float(), t, beta=self.smooth_l1_beta, reduction="sum") / n_reg
        b = max(len(logits), 1)
        return {"loss_objectness": loss_obj / b, "loss_rpn_box_reg": loss_box / b}
