"""Fast R-CNN's box-target statistics: per-class means and standard deviations of the training set.

Fast R-CNN (Girshick 2015, §2.3): "the ground-truth regression targets v_i are normalized to have
zero mean and unit variance". The released code computes the statistics once, before training,
over the whole training roidb (rbgirshick/fast-rcnn ``lib/roi_data_layer/roidb.py``,
``add_bbox_regression_targets`` l. 40-82, ``_compute_targets`` l. 84-125):

- the rois of an image are its ground-truth boxes and its proposals; the examples are the rois
  whose largest IoU with a ground-truth box is ≥ ``BBOX_THRESH`` (0.5), each with the class and
  box of that ground truth (l. 90-101);
- targets are the raw (dx, dy, dw, dh) of R-CNN's appendix C (``BoxCoder`` with unit weights);
- per class c ≥ 1: ``count_c = n_c + EPS`` (``cfg.EPS`` = 1e-14), ``μ_c = Σt / count_c``,
  ``σ_c = sqrt(Σt² / count_c − μ_c²)`` (population statistics, l. 57-70);
- the training roidb holds each image and its mirror (``TRAIN.USE_FLIPPED``): a mirrored example
  has the same dy, dw, dh and the opposite dx, so ``include_flipped`` adds those rows.

Difficult objects: fast-rcnn's ``pascal_voc.py`` drops them (``use_diff`` False), as our SGD
targets do. Two guards the released code has not: class 0 (background) gets μ = 0, σ = 1 (never
used), and a class whose σ is 0 in a coordinate (fewer than two distinct targets) gets σ = 1 there.

:class:`BoxTargetStatsStage` runs before the SGD stage of a detector whose predictor uses them
(``fast_rcnn(bbox_normalize="dataset")``): it computes them from the training split (evaluation
transforms; targets do not depend on the image scale), writes ``bbox_stats/stats.json`` and loads
them into the predictor (``FastRCNNPredictor.set_target_stats``); on ``--resume`` it reads the file.

Shape shorthand: N = rois of an image, G = its ground-truth boxes, K = classes incl. background.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torchvision.ops import box_iou

from visiontasks.detection.base import drop_difficult
from visiontasks.detection.box_coder import BoxCoder
from visiontasks.engine.distributed import is_main_process
from visiontasks.engine.preempt import polled
from visiontasks.engine.stages import Stage
from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["image_targets", "class_target_stats", "BoxTargetStatsStage", "BBOX_THRESH", "EPS"]

#: ``cfg.TRAIN.BBOX_THRESH``: rois with IoU ≥ this with a ground-truth box are regression examples.
BBOX_THRESH = 0.5
#: ``cfg.EPS``, added to the class counts.
EPS = 1e-14


def image_targets(proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                  fg_thresh: float = BBOX_THRESH) -> tuple[torch.Tensor, torch.Tensor]:
    """The regression examples of one image (``_compute_targets``).

    Args:
        proposals: (R, 4) xyxy; the ground-truth boxes are prepended as rois, as in the roidb.
        gt_boxes: (G, 4) xyxy.
        gt_labels: (G,) in 1..K-1.
        fg_thresh: examples have IoU ≥ this with their best ground-truth box.

    Returns:
        ``(labels (E,), targets (E, 4))``: each example's class and raw (dx, dy, dw, dh).
    """
    gt = gt_boxes.float().reshape(-1, 4)
    if len(gt) == 0:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4)
    rois = torch.cat((gt, proposals.float().reshape(-1, 4)))
    best, assign = box_iou(rois, gt).max(dim=1)
    ex = best >= fg_thresh
    targets = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode(gt[assign[ex]], rois[ex])
    return gt_labels.to(torch.int64)[assign[ex]], targets


def class_target_stats(images: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], num_classes: int,
                       fg_thresh: float = BBOX_THRESH, include_flipped: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class means and standard deviations of the raw targets, as ``add_bbox_regression_targets``.

    Args:
        images: per image ``(proposals (R, 4), gt_boxes (G, 4), gt_labels (G,))``.
        num_classes: K, background included.
        fg_thresh: ``BBOX_THRESH``.
        include_flipped: count each image's mirror too (``TRAIN.USE_FLIPPED``: dx negated).

    Returns:
        ``(means (K, 4), stds (K, 4), counts (K,))`` float64; row 0 (background) is 0 / 1 / 0.
    """
    sums = np.zeros((num_classes, 4))
    squares = np.zeros((num_classes, 4))
    counts = np.zeros(num_classes)
    for proposals, gt_boxes, gt_labels in images:
        labels, targets = image_targets(proposals, gt_boxes, gt_labels, fg_thresh)
        t = targets.double().numpy()
        lab = labels.numpy()
        if include_flipped:
            mirrored = t.copy()
            mirrored[:, 0] = -mirrored[:, 0]
            t, lab = np.concatenate((t, mirrored)), np.concatenate((lab, lab))
        np.add.at(sums, lab, t)
        np.add.at(squares, lab, t * t)
        np.add.at(counts, lab, 1.0)
    means = sums / (counts[:, None] + EPS)
    stds = np.sqrt(np.maximum(squares / (counts[:, None] + EPS) - means**2, 0.0))
    means[0], stds[0] = 0.0, 1.0
    stds[stds <= 1e-12] = 1.0
    return means, stds, counts


class BoxTargetStatsStage(Stage):
    """Computes (or, on resume, reads) the training set's target statistics and sets them in the predictor."""

    folders = ("bbox_stats",)
    skip_when_done = False  # re-entered on resume: it loads the stored statistics into the model

    def __init__(self, name: str = "bbox_stats", fg_thresh: float = BBOX_THRESH, include_flipped: bool = True) -> None:
        self.name = name
        self.fg_thresh = float(fg_thresh)
        self.include_flipped = bool(include_flipped)

    def run(self, ctx) -> dict[str, Any]:
        predictor = ctx.model.roi_head.predictor
        path = Path(ctx.out_dir) / "bbox_stats" / "stats.json"
        settings = {"fg_thresh": self.fg_thresh, "include_flipped": self.include_flipped}
        stored = _read(path) if ctx.resume and path.is_file() else None
        if stored is not None and stored.get("settings") == settings:
            means, stds, counts = (np.asarray(stored[k], dtype=np.float64) for k in ("means", "stds", "counts"))
            computed = False
        else:
            means, stds, counts = class_target_stats(self._examples(ctx), predictor.num_classes, **{
                "fg_thresh": self.fg_thresh, "include_flipped": self.include_flipped})
            computed = True
            if is_main_process():
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(path, "w") as f:
                    json.dump({"settings": settings, "means": means.tolist(), "stds": stds.tolist(),
                               "counts": counts.tolist()}, f)
        predictor.set_target_stats(torch.from_numpy(means), torch.from_numpy(stds))
        return {"computed": computed, "examples": int(counts.sum())}

    @staticmethod
    def _examples(ctx):
        from visiontasks.data import build_dataset

        data_cfg = ctx.cfg["data"]
        dataset = build_dataset(data_cfg, data_cfg["train_split"], train=False, task="detection",
                                proposal_params=ctx.model.proposal_params, make_proposals=ctx.model.make_proposals)
        # SIGTERM/SIGINT: stop between images; nothing is written, resume computes them again
        for i in polled(range(len(dataset)), "box-target statistics not written yet"):
            target = drop_difficult(dataset[i][1])
            if "proposals" not in target:
                raise ValueError("box-target statistics need proposals in the dataset (set data.proposals)")
            yield target["proposals"], target["boxes"], target["labels"]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable box-target statistics ({exc}); delete it and resume") from None
