"""The first ``n`` boxes that greedy NMS keeps, computed on a score-ordered prefix where it suffices.

The RPN keeps ``post_nms_top_n`` proposals (300 at test, 2,000 in training) of the
``pre_nms_top_n`` boxes (6,000 / 12,000) that enter NMS (py-faster-rcnn ``lib/rpn/proposal_layer.py``,
"6. apply nms (e.g. threshold = 0.7) 7. take after_nms_topN (e.g. 300)"; torchvision's
``RegionProposalNetwork.filter_proposals`` likewise runs ``batched_nms`` on all of them and then
cuts). ``torchvision.ops.nms`` compares every kept box with every later box, so its cost grows
with the number kept, most of which the cut then throws away.

Greedy NMS visits boxes in descending score and keeps a box if no kept box before it overlaps it
by more than the threshold: whether box ``j`` is kept depends only on the boxes before ``j``. So
NMS of the first ``k`` boxes keeps exactly the boxes of the full NMS that lie among the first ``k``,
in the same order, and if that prefix keeps ``n`` boxes they are the full NMS's first ``n``.
:func:`topn_nms` runs ``torchvision.ops.nms`` on the first ``4n`` boxes and, only if they keep
fewer than ``n``, on all of them. The prefix is tried only when it is at most half of the boxes
(``8n <= N``: the RPN's test setting, 300 of 6,000), since a failed try is paid on top of the full
NMS: with the training setting (2,000 of 12,000) the full NMS keeps fewer than 2,000 boxes, and
doubling prefixes cost 1.38x the plain call there (``bench/topn_nms.py``). On the prefix path the
order is a stable descending sort of the scores, passed to ``nms`` as ranks, so that ties are
broken by position alike in the prefix and in the fallback (``nms`` itself leaves the order of tied
scores unspecified).

Under ONNX export or ``torch.jit`` tracing the branch taken would be frozen at the traced
image's, so there the function is ``nms(...)[:n]`` itself (the exported graph's NMS runs whole).

Shape shorthand: N = boxes; K = kept (<= n).
"""
from __future__ import annotations

import torch
from torchvision.ops import nms

__all__ = ["topn_nms"]


def topn_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, n: int) -> torch.Tensor:
    """Indices of the first ``n`` boxes kept by greedy NMS, in descending score order.

    Equal to ``torchvision.ops.nms(boxes, scores, iou_threshold)[:n]`` whenever no two scores
    tie (with ties and ``8n <= N``, to NMS in the stable descending order of the scores).

    Args:
        boxes: (N, 4) ``xyxy``.
        scores: (N,) scores.
        iou_threshold: boxes overlapping a kept box by more than this IoU are discarded.
        n: how many kept boxes are wanted (>= 0).

    Returns:
        (K,) int64 indices into ``boxes``, K = min(n, boxes the full NMS keeps).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return nms(boxes, scores, iou_threshold)[:n]
    total = boxes.shape[0]
    if n == 0 or total == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    k = 4 * n
    if 2 * k > total:
        return nms(boxes, scores, iou_threshold)[:n]
    order = torch.argsort(scores, descending=True, stable=True)
    ranked = boxes[order]
    ranks = torch.arange(total, 0, -1, dtype=torch.float32, device=boxes.device)  # strictly decreasing
    keep = nms(ranked[:k], ranks[:k], iou_threshold)
    if keep.numel() < n:
        keep = nms(ranked, ranks, iou_threshold)
    return order[keep[:n]]
