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
import os
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visiontasks.evaluation.coco_io import check_coco_results_memory, check_results, load_coco_gt, load_coco_results

__all__ = ["eval_coco", "coco_evaluate", "coco_result", "coco_arrays", "coco_tide_errors", "evaluate_coco_files",
           "detections_to_coco", "COCO_STAT_NAMES"]

_SEGM_ERRORS = "--errors breaks down box detections (TIDE's bbox mode); --iou-type segm is not supported"
#: Names of the 12 entries of ``COCOeval.stats`` (bbox / segm), in pycocotools' order.
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


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


def _per_class_ap(evaluator: COCOeval, gt: COCO) -> dict[str, float]:
    """AP@[.5:.95] of each category from ``eval["precision"]`` [T, R, K, A, M] (area "all", 100 detections),
    the mean over the entries that are not -1 — what ``COCOeval`` with ``params.catIds = [c]`` reports."""
    precision = evaluator.eval["precision"]
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[_cat_name(gt, cat_id)] = float(np.mean(p)) if p.size else float("nan")
    return out


def _cat_name(gt: COCO, cat_id: Any) -> str:
    name = str(gt.cats[cat_id].get("name", cat_id))
    same = [c for c in gt.cats if str(gt.cats[c].get("name")) == name]
    return name if len(same) == 1 else f"{name} (id {cat_id})"


def coco_evaluate(
    coco_gt: COCO | str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """COCO AP/AR with pycocotools' ``COCOeval`` (evaluate, accumulate, summarize), with its details.

    Args:
        coco_gt: a pycocotools ``COCO`` ground truth or the path of an instances json.
        results: COCO results — a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
            (``"segmentation"`` instead of ``"bbox"`` for ``iou_type="segm"``) or the path of a json
            holding such a list (or a dict of equal-length lists, converted with a warning line).
        iou_type: ``"bbox"`` or ``"segm"``.

    Returns:
        ``{"stats": {name: value for the 12 COCO_STAT_NAMES}, "per_class": {category name: AP},
        "summary": pycocotools' 12-line summary text}``; values in [0, 1], NaN where pycocotools
        says -1 (nothing to score). An empty result list scores 0 (no summary text).

    Raises:
        InputError: a path that is missing, not JSON, or malformed (the file and the problem).
        ValueError: an in-memory result without the needed keys, or for an image/category the
            ground truth lacks.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt = coco_gt if isinstance(coco_gt, COCO) else load_coco_gt(coco_gt, iou_type)
    source = results if isinstance(results, (str, os.PathLike)) else None
    if source is not None:  # before reading: too large is one line, not the OOM killer (issue 26)
        check_coco_results_memory(source)
    dets = load_coco_results(results) if source is not None else list(results)
    with_gt = {a["category_id"] for a in gt.dataset.get("annotations", [])}
    if not dets:
        per_class = {_cat_name(gt, c): (0.0 if c in with_gt else float("nan")) for c in sorted(gt.cats)}
        return {"stats": {name: 0.0 for name in COCO_STAT_NAMES}, "per_class": per_class, "summary": ""}
    gt = _prepared_gt(gt)
    check_results(dets, gt, iou_type, source)
    if source is None:  # loadRes adds keys (id, area, ...) to the dicts it gets: not to the caller's
        dets = [dict(d) for d in dets]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_dt = gt.loadRes(dets)
        evaluator = COCOeval(gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, dtype=np.float64)
    return {"stats": {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_STAT_NAMES, stats)},
            "per_class": _per_class_ap(evaluator, gt), "summary": summary.getvalue().rstrip("\n")}


def coco_result(res: Mapping[str, Any], iou_type: str = "bbox") -> dict[str, Any]:
    """The reported COCO result from :func:`coco_evaluate`'s output (tools and trainer alike).

    Returns:
        ``{"metric": "coco", "iou_type", "mAP" (AP@[.5:.95]), the 12 stats by name, "per_class",
        "summary"}`` (NaN where pycocotools has nothing to score).
    """
    stats = res["stats"]
    return {"metric": "coco", "iou_type": iou_type, "mAP": float(stats["AP"]), **stats,
            "per_class": res["per_class"], "summary": res["summary"]}


def coco_arrays(coco_gt: COCO, results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
                iou_type: str = "bbox") -> tuple[tuple[list[np.ndarray], ...], tuple[list[np.ndarray], ...], list[str]]:
    """COCO boxes as per-image arrays, read as tidecv's ``datasets.COCO``/``COCOResult`` read them.

    Images in the order of the instances file, ``bbox`` as given (``xywh``), ground truth and results
    in file order within an image, crowd annotations flagged (ignore regions); categories numbered
    ``1..C`` in id order.

    Returns:
        ``((boxes, labels, scores), (boxes, labels, iscrowd), category names)``.

    Raises:
        InputError: as :func:`coco_evaluate`.
    """
    source = results if isinstance(results, (str, os.PathLike)) else None
    dets = load_coco_results(results) if source is not None else list(results)
    if dets:
        check_results(dets, _prepared_gt(coco_gt), iou_type, source)
    image = {img["id"]: k for k, img in enumerate(coco_gt.dataset.get("images", []))}
    cat_ids = sorted(coco_gt.cats, key=lambda c: (str(type(c)), c))
    label = {cat_id: k + 1 for k, cat_id in enumerate(cat_ids)}

    def per_image(items: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> tuple[list[np.ndarray], ...]:
        owner = np.array([image[a["image_id"]] for a in items], dtype=np.int64)
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(1, len(image)))
        columns = {"bbox": np.array([a["bbox"] for a in items], np.float64).reshape(-1, 4),
                   "label": np.array([label[a["category_id"]] for a in items], np.int64),
                   "score": np.array([a.get("score", 1.0) for a in items], np.float64),
                   "iscrowd": np.array([bool(a.get("iscrowd", 0)) for a in items], bool)}
        return tuple(np.split(columns[f][order], cuts) for f in fields)

    return (per_image(dets, ("bbox", "label", "score")),
            per_image(coco_gt.dataset.get("annotations", []), ("bbox", "label", "iscrowd")),
            [_cat_name(coco_gt, c) for c in cat_ids])


def coco_tide_errors(
    coco_gt: COCO | str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """TIDE's error breakdown (:func:`~visiontasks.evaluation.tide.tide_errors`) of COCO box results,
    crowds as ignore regions (:func:`coco_arrays`).

    Raises:
        ValueError: ``iou_type="segm"`` (the breakdown covers boxes: TIDE's bbox mode).
        InputError: as :func:`coco_evaluate`.
    """
    from visiontasks.evaluation.tide import tide_errors

    if iou_type != "bbox":
        raise ValueError(_SEGM_ERRORS)
    gt = coco_gt if isinstance(coco_gt, COCO) else load_coco_gt(coco_gt, iou_type)
    preds, gts, _ = coco_arrays(gt, results, iou_type)
    return tide_errors(*preds, *gts, box_format="xywh")


def evaluate_coco_files(coco_gt: COCO | str | os.PathLike[str],
                        results: Sequence[Mapping[str, Any]] | str | os.PathLike[str], iou_type: str = "bbox",
                        errors: bool = False) -> dict[str, Any]:
    """The reported COCO result (:func:`coco_result`); with ``errors``, TIDE's breakdown (``"errors"``) and
    the confusion matrix (``"confusion"``) of the boxes too, crowds as ignore regions."""
    from visiontasks.evaluation.tide import REPORTED, tide_errors

    if errors and iou_type != "bbox":
        raise ValueError(_SEGM_ERRORS)  # before any work
    gt = coco_gt if isinstance(coco_gt, COCO) else load_coco_gt(coco_gt, iou_type)
    result = coco_result(coco_evaluate(gt, results, iou_type), iou_type)
    if errors:
        from visiontasks.evaluation.det_confusion import confusion_result

        preds, gts, names = coco_arrays(gt, results, iou_type)
        breakdown = tide_errors(*preds, *gts, box_format="xywh")
        result["errors"] = {k: breakdown[k] for k in REPORTED}
        result["confusion"] = confusion_result(preds, gts, names, box_format="xywh")
    return result


def eval_coco(
    coco_gt: COCO | str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    iou_type: str = "bbox",
    quiet: bool = True,
) -> dict[str, float]:
    """The 12 COCO stats of :func:`coco_evaluate` (``quiet=False`` prints pycocotools' summary).

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``
        as floats in [0, 1] (NaN for an area range without ground truth; all 0 for an empty result list).
    """
    res = coco_evaluate(coco_gt, results, iou_type)
    if not quiet and res["summary"]:
        print(res["summary"])
    return res["stats"]


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
