"""YOLOv1's loss, equation 3 of the paper, one term per key.

With 1^obj_i = "an object's centre falls in cell i", 1^obj_ij = "predictor j of cell i is
responsible for that object" and 1^noobj_ij = not 1^obj_ij::

    loss_xy    = λcoord Σ_i Σ_j 1^obj_ij [(x_i - x̂_i)² + (y_i - ŷ_i)²]
    loss_wh    = λcoord Σ_i Σ_j 1^obj_ij [(√w_i - √ŵ_i)² + (√h_i - √ĥ_i)²]
    loss_obj   =        Σ_i Σ_j 1^obj_ij (C_i - Ĉ_i)²
    loss_noobj = λnoobj Σ_i Σ_j 1^noobj_ij (C_i - Ĉ_i)²          (target C_i = 0)
    loss_class =        Σ_i 1^obj_i Σ_c (p_i(c) - p̂_i(c))²

summed over the S×S grid of every image and **divided by the number of images** (the paper's
loss is per image; darknet sums over the batch and divides the update by the batch size).
λcoord = 5, λnoobj = 0.5. Targets (§2, §2.2):

- x, y: the centre's offset inside its cell (0..1); w, h: width and height as fractions of the
  image; the network's w/h outputs *are* √ŵ and √ĥ (see ``head.py``), compared with √w, √h;
- p_i(c): one-hot class of the cell's object; the class term exists only in object cells;
- the responsible predictor is the one of the B with the highest IoU between its current box
  and the ground truth; the confidence target of that predictor is that IoU (darknet's
  ``rescore=1``; a constant — no gradient flows through it); every other predictor, in every
  cell, gets the noobj term. When all B IoUs are 0 (early training, boxes not overlapping
  yet) the paper is silent; we take darknet's rule: the predictor with the smallest RMSE
  between its (cx, cy, w, h) and the truth's, in image fractions.

One object per cell (§2: "each grid cell only predicts ... one set of class probabilities"):
when several objects' centres fall in one cell, one of them is the cell's target and the others
are not trained on. darknet (``fill_truth_region``) shuffles an image's boxes on every load and
keeps the *first* one per cell — a uniformly random choice, which is ``same_cell="random"``
(the default; torch's global RNG, seeded by the trainer). ``same_cell="first"`` keeps the first
in annotation order (deterministic, for tests and analyses).

Boxes are clipped to the image; boxes with zero width or height after clipping are ignored (no
target, no error). Labels must be in 1..C.

Shape shorthand: N = images, S = grid side, B = boxes per cell, C = classes, G = objects.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.detection.yolo.decode import cxcywh_to_xyxy, grid_boxes

__all__ = ["YOLOLoss", "encode_targets", "box_iou_pairwise", "SAME_CELL_RULES", "LOSS_NAMES"]

SAME_CELL_RULES = ("random", "first")
#: The keys of the loss dict, in equation 3's order.
LOSS_NAMES = ("loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class")


def encode_targets(targets: list[dict], image_size: tuple[int, int], grid_size: int, num_classes: int,
                   same_cell: str = "random") -> dict[str, torch.Tensor]:
    """The per-cell targets of a batch.

    Args:
        targets: N dicts with ``boxes`` (G, 4) xyxy in the pixels of ``image_size`` and
            ``labels`` (G,) int64 in 1..C.
        image_size: (height, width) of the network input.
        grid_size: S.
        num_classes: C.
        same_cell: "random" or "first" (see the module docstring).

    Returns:
        ``mask`` (N, S, S) bool — an object's centre falls in the cell; ``box`` (N, S, S, 4)
        ``(x, y, w, h)`` — offsets in the cell, width/height as fractions of the image;
        ``cls`` (N, S, S, C) one-hot; all zero outside ``mask``.
    """
    if same_cell not in SAME_CELL_RULES:
        raise ValueError(f"same_cell must be one of {SAME_CELL_RULES}, got {same_cell!r}")
    h_img, w_img = float(image_size[0]), float(image_size[1])
    s, n = int(grid_size), len(targets)
    device = targets[0]["boxes"].device if n else torch.device("cpu")
    mask = torch.zeros(n, s, s, dtype=torch.bool, device=device)
    box = torch.zeros(n, s, s, 4, device=device)
    cls = torch.zeros(n, s, s, num_classes, device=device)
    for b, t in enumerate(targets):
        boxes, labels = t["boxes"].float(), t["labels"]
        if boxes.numel() == 0:
            continue
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
            raise ValueError(f"labels must be in 1..{num_classes}, got {labels.tolist()}")
        x0 = boxes[:, 0].clamp(0, w_img)
        x1 = boxes[:, 2].clamp(0, w_img)
        y0 = boxes[:, 1].clamp(0, h_img)
        y1 = boxes[:, 3].clamp(0, h_img)
        w, h = (x1 - x0) / w_img, (y1 - y0) / h_img
        cx, cy = (x0 + x1) / (2 * w_img) * s, (y0 + y1) / (2 * h_img) * s
        col = cx.floor().long().clamp(0, s - 1)
        row = cy.floor().long().clamp(0, s - 1)
        valid = (w > 0) & (h > 0)
        order = torch.randperm(len(boxes)).tolist() if same_cell == "random" else range(len(boxes))
        taken: set[tuple[int, int]] = set()
        for g in order:
            if not bool(valid[g]):
                continue
            cell = (int(row[g]), int(col[g]))
            if cell in taken:
                continue
            taken.add(cell)
            i, j = cell
            mask[b, i, j] = True
            box[b, i, j] = torch.stack([cx[g] - j, cy[g] - i, w[g], h[g]])
            cls[b, i, j, int(labels[g]) - 1] = 1.0
    return {"mask": mask, "box": box, "cls": cls}


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching boxes ``(..., 4)`` xyxy (elementwise, broadcasting); 0 for empty unions."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


class YOLOLoss(nn.Module):
    """Equation 3 of the paper (see the module docstring).

    Args:
        grid_size: S.
        num_boxes: B.
        num_classes: C (no background).
        lambda_coord: weight of the coordinate terms (5).
        lambda_noobj: weight of the confidence term of predictors without an object (0.5).
        same_cell: which object a cell trains on when several centres fall in it.
    """

    def __init__(self, grid_size: int = 7, num_boxes: int = 2, num_classes: int = 20, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5, same_cell: str = "random") -> None:
        super().__init__()
        if same_cell not in SAME_CELL_RULES:
            raise ValueError(f"same_cell must be one of {SAME_CELL_RULES}, got {same_cell!r}")
        if lambda_coord < 0 or lambda_noobj < 0:
            raise ValueError(f"lambda_coord and lambda_noobj must be >= 0, got {lambda_coord!r}, {lambda_noobj!r}")
        self.grid_size, self.num_boxes, self.num_classes = int(grid_size), int(num_boxes), int(num_classes)
        self.lambda_coord, self.lambda_noobj = float(lambda_coord), float(lambda_noobj)
        self.same_cell = same_cell

    def responsible(self, pred_boxes: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which predictor is responsible, and the IoUs.

        Args:
            pred_boxes: (..., B, 4) raw ``(x, y, sqrt_w, sqrt_h)`` of the grid (N, S, S leading).
            truth: (..., 4) ``(x, y, w, h)`` cell targets (as :func:`encode_targets`).

        Returns:
            ``index`` (...) int64 of the responsible predictor and ``iou`` (..., B), both detached.
        """
        with torch.no_grad():
            p = grid_boxes(pred_boxes.detach())                                    # (N,S,S,B,4) cx,cy,w,h
            t = grid_boxes(torch.cat([truth[..., :2], truth[..., 2:].clamp(min=0).sqrt()], -1).unsqueeze(3))
            iou = box_iou_pairwise(cxcywh_to_xyxy(p), cxcywh_to_xyxy(t))          # (N,S,S,B)
            rmse = ((p - t) ** 2).sum(-1).sqrt()
            by_iou = iou.argmax(-1)
            by_rmse = rmse.argmin(-1)
            index = torch.where(iou.amax(-1) > 0, by_iou, by_rmse)
        return index, iou

    def forward(self, pred: torch.Tensor, targets: list[dict], image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The five terms of equation 3 for a batch.

        Args:
            pred: (N, S, S, 5B+C) network output.
            targets: N dicts ``boxes`` (G, 4) in input pixels and ``labels`` (G,) in 1..C.
            image_size: (height, width) of the input.

        Returns:
            ``loss_xy``, ``loss_wh``, ``loss_obj``, ``loss_noobj``, ``loss_class`` — scalar tensors
            (sums over the grid, divided by N).
        """
        s, nb, nc = self.grid_size, self.num_boxes, self.num_classes
        if pred.dim() != 4 or tuple(pred.shape[1:]) != (s, s, 5 * nb + nc):
            raise ValueError(f"predictions must be (N, {s}, {s}, {5 * nb + nc}) for S={s}, B={nb}, C={nc} "
                             f"(5B+C per cell), got {tuple(pred.shape)}")
        if len(targets) != pred.shape[0]:
            raise ValueError(f"got {len(targets)} targets for {pred.shape[0]} images")
        pred = pred.float()
        n = pred.shape[0]
        enc = encode_targets(targets, image_size, s, nc, self.same_cell)
        mask, tbox, tcls = (enc[k].to(pred.device) for k in ("mask", "box", "cls"))
        per_box = pred[..., : 5 * nb].reshape(n, s, s, nb, 5)
        index, iou = self.responsible(per_box[..., :4], tbox)
        resp = torch.nn.functional.one_hot(index, nb).bool() & mask.unsqueeze(-1)   # 1^obj_ij, (N,S,S,B)
        r = resp.float()
        x, y, sw, sh, conf = per_box.unbind(-1)
        tx, ty, tw, th = (v.unsqueeze(-1) for v in tbox.unbind(-1))
        loss_xy = (r * ((x - tx) ** 2 + (y - ty) ** 2)).sum()
        loss_wh = (r * ((sw - tw.clamp(min=0).sqrt()) ** 2 + (sh - th.clamp(min=0).sqrt()) ** 2)).sum()
        loss_obj = (r * (conf - iou) ** 2).sum()
        loss_noobj = ((1.0 - r) * conf ** 2).sum()
        loss_class = (mask.unsqueeze(-1).float() * (pred[..., 5 * nb:] - tcls) ** 2).sum()
        return {
            "loss_xy": self.lambda_coord * loss_xy / n,
            "loss_wh": self.lambda_coord * loss_wh / n,
            "loss_obj": loss_obj / n,
            "loss_noobj": self.lambda_noobj * loss_noobj / n,
            "loss_class": loss_class / n,
        }
