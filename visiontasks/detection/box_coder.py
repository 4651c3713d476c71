"""Box regression targets of R-CNN (Girshick et al. 2014, appendix C): (dx, dy, dw, dh) deltas.

For a reference box P (anchor or proposal) and a ground-truth box G, with widths/heights
``w = x1 - x0`` and centres ``cx = x0 + w / 2`` (continuous 0-based pixel coordinates, as
torchvision; py-faster-rcnn adds 1 to widths, which only shifts targets by a fraction of a
pixel)::

    dx = wx * (Gcx - Pcx) / Pw      dw = ww * log(Gw / Pw)
    dy = wy * (Gcy - Pcy) / Ph      dh = wh * log(Gh / Ph)

The weights ``(wx, wy, ww, wh)`` are the inverse of the target standard deviations that
Fast R-CNN normalises with: (10, 10, 5, 5) = 1 / (0.1, 0.1, 0.2, 0.2) for the RoI head,
(1, 1, 1, 1) for the RPN. Decoding clamps ``dw``/``dh`` at ``log(1000 / 16)`` so that an
untrained network cannot overflow ``exp``.

Shape shorthand: N = boxes, K = classes (decode works on any ``(..., 4)`` layout).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["BoxCoder", "BBOX_CLIP"]

#: Upper bound of decoded dw/dh (py-faster-rcnn / torchvision): a box grows at most 62.5×.
BBOX_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as deltas w.r.t. reference boxes and decodes them back.

    Args:
        weights: (wx, wy, ww, wh), the inverse target standard deviations.
        clip: maximum value of the (weighted-out) dw/dh before ``exp`` in :meth:`decode`.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clip: float = BBOX_CLIP) -> None:
        if len(weights) != 4 or any(float(w) <= 0 for w in weights):
            raise ValueError(f"weights must be 4 positive numbers, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.clip = float(clip)

    def encode(self, gt: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Regression targets that move ``reference`` onto ``gt``.

        Args:
            gt: (N, 4) xyxy ground-truth boxes.
            reference: (N, 4) xyxy anchors/proposals, paired row by row with ``gt``.

        Returns:
            (N, 4) weighted deltas (dx, dy, dw, dh), float32 (or the inputs' wider dtype).
        """
        gt = gt.float()
        reference = reference.float()
        wx, wy, ww, wh = self.weights
        pw = reference[:, 2] - reference[:, 0]
        ph = reference[:, 3] - reference[:, 1]
        pcx = reference[:, 0] + 0.5 * pw
        pcy = reference[:, 1] + 0.5 * ph
        gw = gt[:, 2] - gt[:, 0]
        gh = gt[:, 3] - gt[:, 1]
        gcx = gt[:, 0] + 0.5 * gw
        gcy = gt[:, 1] + 0.5 * gh
        return torch.stack(
            (wx * (gcx - pcx) / pw, wy * (gcy - pcy) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)),
            dim=1,
        )

    def decode(self, deltas: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Applies ``deltas`` to ``reference`` boxes.

        Args:
            deltas: (N, 4) or (N, K, 4) weighted deltas (class-specific in the second case).
            reference: (N, 4) xyxy boxes, broadcast over K.

        Returns:
            Boxes of the shape of ``deltas``, float32, xyxy (not clipped to the image).
        """
        deltas = deltas.float()
        reference = reference.float()
        if deltas.dim() == 3:
            reference = reference[:, None, :]
        wx, wy, ww, wh = self.weights
        pw = reference[..., 2] - reference[..., 0]
        ph = reference[..., 3] - reference[..., 1]
        pcx = reference[..., 0] + 0.5 * pw
        pcy = reference[..., 1] + 0.5 * ph
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.clip)
        dh = (deltas[..., 3] / wh).clamp(max=self.clip)
        cx = dx * pw + pcx
        cy = dy * ph + pcy
        half_w = 0.5 * torch.exp(dw) * pw
        half_h = 0.5 * torch.exp(dh) * ph
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
