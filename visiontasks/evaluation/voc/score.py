"""The VOC detection result the tools and the trainer report, and results files scored into it (torch-free).

One result for every way in: results files (:func:`evaluate_voc_files`) and a model run over a
dataset (:func:`visiontasks.engine.evaluate.evaluate_detection`) both end in :func:`voc_result`::

    {"metric", "iou", "reference", "mAP", "per_class": {name: AP or NaN}, "curves": raw AP output}

A class without (non-difficult) ground truth has AP NaN, left out of the mean; the tools write it
as null and say so in one warning line (:func:`visiontasks.evaluation.report.warn_undefined`).

Shape shorthand: N = images of the split.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from visiontasks.evaluation.voc.ap import eval_detection_voc, eval_detection_voc_by_area

__all__ = ["VOC_METRICS", "VOC_REFERENCES", "check_voc_options", "voc_options", "voc_result", "score_voc",
           "voc_errors", "voc_by_size", "AREA_RANGES", "evaluate_voc_files"]

VOC_METRICS = ("voc07", "voc12")
VOC_REFERENCES = ("devkit", "voc_eval")


def check_voc_options(metric: str, iou_thresh: float, reference: str) -> None:
    """Raises ValueError for a metric, overlap threshold or reference the VOC evaluator does not have."""
    if metric not in VOC_METRICS:
        raise ValueError(f"VOC metric must be one of {VOC_METRICS}, got {metric!r}")
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"the IoU threshold (--iou) must lie in (0, 1], got {iou_thresh!r}")
    if reference not in VOC_REFERENCES:
        raise ValueError(f"reference must be one of {VOC_REFERENCES}, got {reference!r}")


def voc_options(metric: str, iou_thresh: float | None = None, reference: str | None = None) -> dict[str, Any]:
    """The VOC keywords of a metric, defaults filled in and checked: ``{"iou_thresh", "reference"}``,
    or ``{}`` for ``"coco"`` (which reports AP50, AP75 and AP@[.5:.95] and takes neither).

    Raises:
        ValueError: an option that the metric does not have or a value out of range.
    """
    if metric == "coco":
        if iou_thresh is not None or reference is not None:
            raise ValueError("--iou and --reference apply to voc07/voc12; COCO reports AP50, AP75 and AP@[.5:.95]")
        return {}
    options = {"iou_thresh": 0.5 if iou_thresh is None else iou_thresh, "reference": reference or "devkit"}
    check_voc_options(metric, **options)
    return options


def voc_result(res: Mapping[str, Any], classes: Sequence[str], metric: str, iou_thresh: float,
               reference: str) -> dict[str, Any]:
    """The reported result from :func:`~visiontasks.evaluation.voc.ap.eval_detection_voc`'s output.

    Args:
        res: ``{"ap", "map", "precision", "recall", "npos"}`` for the C classes.
        classes: the C class names (label ``c`` is ``classes[c - 1]``).
        metric: ``"voc07"`` or ``"voc12"``.
        iou_thresh: the overlap a true positive needed.
        reference: ``"devkit"`` or ``"voc_eval"``.
    """
    return {"metric": metric, "iou": iou_thresh, "reference": reference, "mAP": float(res["map"]),
            "per_class": {name: float(ap) for name, ap in zip(classes, res["ap"])}, "curves": res}


def score_voc(preds: Sequence[Sequence[Any]], gts: Sequence[Sequence[Any]], classes: Sequence[str],
              metric: str = "voc07", iou_thresh: float = 0.5, reference: str = "devkit") -> dict[str, Any]:
    """VOC AP of per-image arrays, as :func:`voc_result`.

    Args:
        preds: ``(boxes, labels, scores)``, each a list of N per-image arrays.
        gts: ``(boxes, labels, difficult)``, each a list of N per-image arrays.
        classes: the C class names.
    """
    check_voc_options(metric, iou_thresh, reference)
    res = eval_detection_voc(*preds, *gts, num_classes=len(classes), iou_thresh=iou_thresh, metric=metric,
                             reference=reference)
    return voc_result(res, classes, metric, iou_thresh, reference)


#: COCO's area ranges (``COCOeval.Params.areaRng``), in square pixels: an object belongs to a range
#: when ``lo <= area <= hi``.
AREA_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}


def voc_by_size(preds: Sequence[Sequence[Any]], gts: Sequence[Sequence[Any]], classes: Sequence[str],
                metric: str = "voc07", iou_thresh: float = 0.5, reference: str = "devkit") -> dict[str, Any]:
    """VOC AP by object size, with COCO's area ranges on VOC boxes (area ``(x1 - x0 + 1) * (y1 - y0 + 1)``).

    For each range, as COCOeval does: objects outside it are ignored like difficult ones (a
    detection whose best match is one is ignored, as the devkit ignores detections of difficult
    objects), and so are false positives whose own box is outside it.

    Returns:
        ``{"small" | "medium" | "large": {"mAP", "per_class"}}`` (NaN where a range has no object).
    """
    res = eval_detection_voc_by_area(*preds, *gts, AREA_RANGES, num_classes=len(classes), iou_thresh=iou_thresh,
                                     metric=metric, reference=reference)
    return {name: {"mAP": float(r["map"]), "per_class": {c: float(ap) for c, ap in zip(classes, r["ap"])}}
            for name, r in res.items()}


def voc_errors(preds: Sequence[Sequence[Any]], gts: Sequence[Sequence[Any]], classes: Sequence[str],
               metric: str = "voc07", iou_thresh: float = 0.5, reference: str = "devkit") -> dict[str, Any]:
    """Why VOC boxes fall short: TIDE's breakdown, the confusion matrix and AP by object size, with the
    devkit's overlap (+1 pixel) and difficult objects as ignore regions.

    Args:
        preds: ``(boxes, labels, scores)``, each a list of N per-image arrays.
        gts: ``(boxes, labels, difficult)``, each a list of N per-image arrays.
        classes: the C class names.
        metric, iou_thresh, reference: those of the AP by size (TIDE's own are fixed).

    Returns:
        ``{"errors": {"ap50", "main", "special"}, "confusion": {...}, "by_size": {...}}``
        (:func:`~visiontasks.evaluation.tide.tide_errors`,
        :func:`~visiontasks.evaluation.det_confusion.confusion_result`, :func:`voc_by_size`).
    """
    from visiontasks.evaluation.det_confusion import confusion_result
    from visiontasks.evaluation.tide import REPORTED, tide_errors

    res = tide_errors(*preds, *gts, box_format="voc")
    return {"errors": {k: res[k] for k in REPORTED}, "confusion": confusion_result(preds, gts, classes),
            "by_size": voc_by_size(preds, gts, classes, metric, iou_thresh, reference)}


def evaluate_voc_files(root: str | os.PathLike[str], split: str, detections: str | os.PathLike[str],
                       classes: Sequence[str] | str | None = None, metric: str = "voc07", iou_thresh: float = 0.5,
                       reference: str = "devkit", cache_dir: str | os.PathLike[str] | None = None,
                       errors: bool = False) -> dict[str, Any]:
    """Scores a folder of ``comp4_det_<split>_<class>.txt`` files against a VOC-layout split.

    Reads only the split file and ``Annotations/`` (never images) and imports no torch. Without
    ``errors`` the results files are read and scored one class at a time (the memory of the largest
    file); with it all at once. Either way the memory needed is estimated from the files first and,
    when more than is available, refused in one line (docs/RELIABILITY.md).

    Args:
        root: VOC-layout folder (``Annotations/``, ``ImageSets/Main/``).
        split: split name.
        detections: the folder of results files.
        classes: class names; None: VOC's 20; ``"auto"``: the sorted union of the names in the
            split's annotations and of the classes of the results files (a class with results but
            no ground truth then scores NaN, as when it is listed).
        metric: ``"voc07"`` or ``"voc12"``.
        iou_thresh: overlap a true positive needs.
        reference: ``"devkit"`` or ``"voc_eval"`` (see :mod:`visiontasks.evaluation.voc.ap`).
        cache_dir: the annotation cache folder (None: parse every file, write no cache).
        errors: add TIDE's error breakdown, the confusion matrix and AP by size (:func:`voc_errors`).

    Returns:
        The :func:`voc_result` dict.

    Raises:
        InputError: a missing or malformed annotation, split file or results file, a results file
            of a class outside ``classes`` (when they are listed), an image outside the split; results
            too large for the memory available.
    """
    from visiontasks.evaluation.voc import results as files
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth

    check_voc_options(metric, iou_thresh, reference)
    extra = files.results_classes(detections, split) if classes == "auto" else ()
    gt = load_detection_ground_truth(root, split, classes, cache_dir=cache_dir, extra_classes=extra)
    gts = (gt.boxes, gt.labels, gt.difficult)
    if not errors:  # class by class: memory of the largest results file, not of all of them
        return _score_by_class(files.read_voc_results_by_class(detections, split, gt.classes, gt.ids), gts,
                               gt.classes, metric, iou_thresh, reference)
    preds = files.read_voc_results(detections, split, gt.classes, gt.ids, files.FULL_BYTES_PER_DETECTION
                                   + files.ERRORS_BYTES_PER_DETECTION)
    return {**score_voc(preds, gts, gt.classes, metric, iou_thresh, reference),
            **voc_errors(preds, gts, gt.classes, metric, iou_thresh, reference)}


def _score_by_class(per_class: Iterable[tuple[int, Sequence[Sequence[Any]]]], gts: Sequence[Sequence[Any]],
                    classes: Sequence[str], metric: str, iou_thresh: float, reference: str) -> dict[str, Any]:
    """:func:`score_voc` of detections given one class at a time (``(label, preds of that class only)``),
    equal to scoring them all at once: a class's AP depends only on its own detections (matched to its
    own ground truth, ranked among themselves)."""
    empty = [np.zeros((0, 4)) for _ in gts[0]], [np.zeros(0, np.int64) for _ in gts[0]], \
        [np.zeros(0) for _ in gts[0]]
    res = eval_detection_voc(*empty, *gts, num_classes=len(classes), iou_thresh=iou_thresh, metric=metric,
                             reference=reference)
    for label, preds in per_class:
        one = eval_detection_voc(*preds, *gts, num_classes=len(classes), iou_thresh=iou_thresh, metric=metric,
                                 reference=reference)
        for key in ("ap", "precision", "recall"):
            res[key][label - 1] = one[key][label - 1]
        del preds, one  # before the next file is read
    res["map"] = float(np.nanmean(res["ap"])) if np.isfinite(res["ap"]).any() else float("nan")
    return voc_result(res, classes, metric, iou_thresh, reference)
