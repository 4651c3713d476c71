"""eval_detection_voc against a naive reference: py-faster-rcnn's ``voc_eval`` loop, one detection at a time.

``voc_eval_reference`` below is a faithful port of ``voc_eval.py`` (Ross Girshick, MIT licence)
rewritten for in-memory per-image arrays instead of annotation caches and results files. Its one
deliberate change is a *stable* score sort (``voc_eval`` uses numpy's default quicksort, whose order
of ties is unspecified), so that tied scores are ordered the same way here and in the product.
``devkit=True`` switches the two places where the MATLAB devkit differs: ``>=`` instead of ``>``
and MATLAB's ``0:0.1:1`` thresholds. bench/eval_speed.py times the product against this loop.
"""
from __future__ import annotations

import numpy as np
import pytest

from visiontasks.evaluation import eval_detection_voc

_DEVKIT_THRESHOLDS = [k * 0.1 if k < 5 else 1.0 - (10 - k) * 0.1 for k in range(11)]


def voc_ap_reference(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool, devkit: bool) -> float:
    """``voc_ap`` of voc_eval.py, verbatim but for the devkit's threshold list."""
    if use_07_metric:
        ap = 0.0
        for t in (_DEVKIT_THRESHOLDS if devkit else np.arange(0.0, 1.1, 0.1)):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_eval_reference(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficults, num_classes,
                       ovthresh=0.5, use_07_metric=True, devkit=False):
    """Per-class AP (NaN where npos == 0) with voc_eval.py's per-detection loop."""
    aps = []
    for c in range(1, num_classes + 1):
        class_recs = {}
        npos = 0
        for i in range(len(gt_boxes)):
            keep = np.asarray(gt_labels[i]) == c
            difficult = np.asarray(gt_difficults[i])[keep].astype(bool)
            class_recs[i] = {"bbox": np.asarray(gt_boxes[i]).reshape(-1, 4)[keep], "difficult": difficult,
                             "det": [False] * int(keep.sum())}
            npos = npos + sum(~difficult)
        image_ids, confidence, boxes = [], [], []
        for i in range(len(pred_boxes)):  # the lines of comp4_det_<split>_<class>.txt, image by image
            for j in np.flatnonzero(np.asarray(pred_labels[i]) == c):
                image_ids.append(i)
                confidence.append(float(pred_scores[i][j]))
                boxes.append([float(v) for v in pred_boxes[i][j]])
        confidence = np.array(confidence)
        BB = np.array(boxes).reshape(-1, 4)
        sorted_ind = np.argsort(-confidence, kind="stable")
        BB = BB[sorted_ind, :]
        image_ids = [image_ids[x] for x in sorted_ind]

        nd = len(image_ids)
        tp = np.zeros(nd)
        fp = np.zeros(nd)
        for d in range(nd):
            R = class_recs[image_ids[d]]
            bb = BB[d, :].astype(float)
            ovmax = -np.inf
            BBGT = R["bbox"].astype(float)
            if BBGT.size > 0:
                ixmin = np.maximum(BBGT[:, 0], bb[0])
                iymin = np.maximum(BBGT[:, 1], bb[1])
                ixmax = np.minimum(BBGT[:, 2], bb[2])
                iymax = np.minimum(BBGT[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
                ih = np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                       + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0) - inters)
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if (ovmax >= ovthresh) if devkit else (ovmax > ovthresh):
                if not R["difficult"][jmax]:
                    if not R["det"][jmax]:
                        tp[d] = 1.0
                        R["det"][jmax] = 1
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        if npos == 0:
            aps.append(np.nan)
            continue
        fp = np.cumsum(fp)
        tp = np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap_reference(rec, prec, use_07_metric, devkit))
    return np.array(aps, dtype=np.float64)


def random_workload(seed: int, num_images: int = 60, num_classes: int = 5, integer: bool = True,
                    score_decimals: int | None = None):
    """Scattered GT (some difficult), noisy copies (duplicates included), random boxes, GT-free images.

    Integer boxes make overlaps of exactly 0.5 likely; rounded scores create ties.
    """
    rng = np.random.default_rng(seed)
    pb, pl, ps, gb, gl, gd = [], [], [], [], [], []
    for i in range(num_images):
        n = 0 if i % 7 == 0 else int(rng.integers(1, 6))
        xy = rng.uniform(0, 80, (n, 2))
        wh = rng.uniform(4, 40, (n, 2))
        g = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(1, num_classes + 1, n)
        labels[labels == num_classes] = num_classes if i % 2 else 1  # class C: rare
        difficult = rng.random(n) < 0.2
        difficult[labels == num_classes] = True                        # ... and difficult-only
        copies = rng.integers(0, 4, n)
        nb = np.repeat(g, copies, 0) + rng.normal(0, 3, (int(copies.sum()), 4))
        nl = np.repeat(labels, copies)
        k = int(rng.integers(0, 8))
        rxy = rng.uniform(0, 90, (k, 2))
        rb = np.concatenate([rxy, rxy + rng.uniform(3, 40, (k, 2))], 1)
        if integer:
            g, nb, rb = np.round(g), np.round(nb), np.round(rb)
            # the top half of a box whose inclusive height is even overlaps it by exactly 0.5
            even = (g[:, 3] - g[:, 1] + 1) % 2 == 0
            half = g[even].copy()
            half[:, 3] = half[:, 1] + (half[:, 3] - half[:, 1] + 1) / 2 - 1
            nb = np.concatenate([nb, half])
            nl = np.concatenate([nl, labels[even]])
        boxes = np.concatenate([nb, rb])
        scores = rng.random(len(boxes))
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        pb.append(boxes)
        pl.append(np.concatenate([nl, rng.integers(1, num_classes + 1, k)]))
        ps.append(scores)
        gb.append(g)
        gl.append(labels)
        gd.append(difficult)
    return pb, pl, ps, gb, gl, gd


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["voc07", "voc12"])
@pytest.mark.parametrize("reference", ["devkit", "voc_eval"])
def test_agrees_with_voc_eval_loop(seed: int, metric: str, reference: str) -> None:
    work = random_workload(seed, integer=seed != 2, score_decimals=2 if seed == 1 else None)
    ours = eval_detection_voc(*work, num_classes=5, metric=metric, reference=reference)
    ref = voc_eval_reference(*work, num_classes=5, use_07_metric=metric == "voc07", devkit=reference == "devkit")
    assert np.isnan(ref[-1]) and np.isnan(ours["ap"][-1])  # the difficult-only class
    np.testing.assert_allclose(ours["ap"], ref, rtol=0, atol=1e-12, equal_nan=True)
    assert abs(ours["map"] - np.nanmean(ref)) < 1e-12


def test_workload_exercises_the_threshold_difference() -> None:
    """The integer workloads contain overlaps of exactly 0.5, so '>=' and '>' must give different APs."""
    work = random_workload(0)
    devkit = voc_eval_reference(*work, num_classes=5, use_07_metric=False, devkit=True)
    loop = voc_eval_reference(*work, num_classes=5, use_07_metric=False, devkit=False)
    assert not np.allclose(devkit[:-1], loop[:-1])


def test_iou_threshold_other_than_half() -> None:
    work = random_workload(3, integer=False)
    ours = eval_detection_voc(*work, num_classes=5, iou_thresh=0.7, metric="voc12")
    ref = voc_eval_reference(*work, num_classes=5, ovthresh=0.7, use_07_metric=False, devkit=True)
    np.testing.assert_allclose(ours["ap"], ref, rtol=0, atol=1e-12, equal_nan=True)
