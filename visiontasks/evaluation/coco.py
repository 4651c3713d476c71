"""COCO detection metrics through pycocotools' ``COCOeval`` (the reference).

Two pitfalls handled here: pycocotools silently mis-matches ground truth whose annotation id is 0
(ids are used as "matched" flags), so ground truth with ids that are not unique positive integers
is renumbered from 1 on a copy (missing ``iscrowd``/``area`` are filled in there too); and
``COCO.loadRes`` crashes on an empty result list, which here scores 0 everywhere. ``COCOeval`` reports ``-1`` for an area range without ground truth; that
becomes NaN ("nothing to score"), as elsewhere in the toolkit.

Shape shorthand: D = detections of an image.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visiontasks.data.coco import load_coco
from visiontasks.errors import InputError

__all__ = ["eval_coco", "detections_to_coco", "COCO_STAT_NAMES"]

#: Names of the first nine entries of ``COCOeval.stats`` (bbox / segm).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def _load_results(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(path, "COCO results file not found")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise InputError(path, "a COCO results file must be a JSON list of objects")
    return results


def _prepared_gt(coco: COCO) -> COCO:
    """The ground truth itself, or a fixed copy: annotation ids renumbered from 1 when they are not
    unique positive integers, and missing ``iscrowd`` (0) / ``area`` (box area) filled in."""
    anns = coco.dataset.get("annotations", [])
    ids = [ann.get("id") for ann in anns]
    ids_ok = all(isinstance(i, int) and i >= 1 for i in ids) and len(set(ids)) == len(ids)
    if ids_ok and all("iscrowd" in a and "area" in a for a in anns):
        return coco
    dataset = copy.deepcopy(coco.dataset)
    for new_id, ann in enumerate(dataset["annotations"], start=1):
        if not ids_ok:
            ann["id"] = new_id
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3]) if "bbox" in ann else 0.0
    fixed = COCO()
    fixed.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        fixed.createIndex()
    return fixed


def _check_results(results: list[dict], coco: COCO, iou_type: str) -> None:
    needed = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for k, res in enumerate(results):
        missing = [key for key in needed if key not in res]
        if missing:
            raise ValueError(f"result {k} lacks {missing!r}: {res!r}")
        if res["image_id"] not in coco.imgs:
            raise ValueError(f"result {k} is for image {res['image_id']!r}, which the ground truth does not have")
        if res["category_id"] not in coco.cats:
            raise ValueError(f"result {k} has category {res['category_id']!r}, unknown to the ground truth")


def eval_coco(
    coco_gt: COCO | str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    iou_type: str = "bbox",
    quiet: bool = True,
) -> dict[str, float]:
    """COCO AP/AR with pycocotools' ``COCOeval`` (evaluate, accumulate, summarize).

    Args:
        coco_gt: a pycocotools ``COCO`` ground truth or the path of an instances json.
        results: COCO results — a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
            (``"segmentation"`` instead of ``"bbox"`` for ``iou_type="segm"``) or the path of such a json.
        iou_type: ``"bbox"`` or ``"segm"``.
        quiet: hide pycocotools' printing.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"}`` as floats in [0, 1]
        (NaN for an area range without ground truth; all 0 for an empty result list).

    Raises:
        InputError: a path that is missing or not valid JSON.
        ValueError: a result without the needed keys, or for an image/category the ground truth lacks.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt = coco_gt if isinstance(coco_gt, COCO) else load_coco(coco_gt)
    dets = _load_results(Path(results)) if isinstance(results, (str, os.PathLike)) else list(results)
    if not dets:
        return {name: 0.0 for name in COCO_STAT_NAMES}
    gt = _prepared_gt(gt)
    _check_results(dets, gt, iou_type)
    dets = [dict(d) for d in dets]  # loadRes adds keys (id, area, ...) to the dicts it gets
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        coco_dt = gt.loadRes(dets)
        evaluator = COCOeval(gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats[: len(COCO_STAT_NAMES)], dtype=np.float64)
    return {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_STAT_NAMES, stats)}


def detections_to_coco(
    image_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    label_to_cat_id: Mapping[int, int],
) -> list[dict[str, Any]]:
    """One image's detections as COCO result dicts.

    ================  ========  ==========================
    name              shape     dtype
    ================  ========  ==========================
    boxes             (D, 4)    float, ``xyxy`` 0-based
    scores            (D,)      float
    labels            (D,)      int, ``1..C``
    ================  ========  ==========================

    Args:
        image_id: the COCO image id.
        label_to_cat_id: contiguous label -> COCO category id.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` with plain Python numbers.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels differ in number")
    unknown = sorted(set(labels.tolist()) - set(label_to_cat_id))
    if unknown:
        raise ValueError(f"labels {unknown!r} have no COCO category in label_to_cat_id")
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return [{"image_id": int(image_id), "category_id": int(label_to_cat_id[lab]), "bbox": box, "score": score}
            for box, score, lab in zip(xywh.tolist(), scores.tolist(), labels.tolist())]
