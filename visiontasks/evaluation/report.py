"""The evaluators' results as the tools print and write them (torch-free).

Undefined figures (a class without ground truth, a split without objects, masks that are all
"ignore") are NaN inside the evaluators; here they become JSON ``null`` and ``n/a`` on the
console, and :func:`warn_undefined` says so in one ``warning:`` line — never a crash.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from visiontasks.io import atomic_write

__all__ = ["warn", "nan_to_none", "public_metrics", "format_metrics", "format_proposals", "write_json",
           "segmentation_result", "undefined_metrics", "warn_undefined", "HEADLINE_KEYS"]

#: The scalar figures a result may carry, in the order the console shows them.
HEADLINE_KEYS = ("mAP", "mIoU", "pixel_accuracy", "mean_class_accuracy")


def warn(message: str) -> None:
    """Prints ``warning: <message>`` as one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def nan_to_none(value: Any) -> float | None:
    """JSON has no NaN: undefined figures are written as null."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return nan_to_none(value)
    return value


def public_metrics(metrics: Mapping[str, Any]) -> dict:
    """The JSON written to files: no raw curves, every NaN as null (nested dicts included)."""
    return _clean({k: v for k, v in metrics.items() if k not in ("curves", "summary")})


def _pct(value: float | None) -> str:
    return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:6.2f}"


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """A per-class table followed by the headline figure(s) (``n/a`` for undefined ones) and, when the
    result has them, TIDE's error tables, AP by object size and the detection confusion matrix."""
    per_class = metrics.get("per_class", {})
    accuracy = metrics.get("per_class_accuracy")
    lines = []
    for name, v in per_class.items():
        extra = f"  {_pct(accuracy.get(name))}" if accuracy else ""
        lines.append(f"{name:>16s}  {_pct(v)}{extra}")
    if accuracy:
        lines.insert(0, f"{'class':>16s}  {'IoU':>6s}  {'acc':>6s}")
    if "mAP" in metrics:
        iou = metrics.get("iou")
        label = f"mAP ({metrics.get('metric')}{'' if iou in (None, 0.5) else f'@{iou:g}'})"
        lines.append(f"{label:>16s}  {_pct(metrics['mAP'])}")
    else:
        for key in HEADLINE_KEYS[1:]:
            if key in metrics:
                lines.append(f"{key:>16s}  {_pct(metrics[key])}")
    if metrics.get("errors"):
        from visiontasks.evaluation.tide import format_tide

        lines += ["", format_tide(metrics["errors"], name="TIDE error breakdown")]
    if metrics.get("by_size"):
        sizes = metrics["by_size"]
        lines += ["", "AP by object size (COCO's area ranges: small < 32^2 <= medium < 96^2 <= large)",
                  f"{'':>16s}  " + "  ".join(f"{k:>6s}" for k in sizes),
                  f"{'mAP':>16s}  " + "  ".join(_pct(v["mAP"]) for v in sizes.values())]
    if metrics.get("confusion"):
        from visiontasks.evaluation.det_confusion import format_confusion

        lines += ["", format_confusion(metrics["confusion"])]
    return "\n".join(lines)


def format_proposals(result: Mapping[str, Any], curve: Mapping[str, Sequence], params: Mapping[str, Any],
                     folder: str, num_images: int, num_gt: int, timed: int) -> str:
    """The console report of proposal quality: the headline figures, then the recall-vs-count table.

    Args:
        result: ``{"recall_50", "recall_70", "average_recall", "mabo", "boxes_per_image",
            "seconds_per_image"}`` (None where undefined or untimed).
        curve: :func:`~visiontasks.evaluation.proposals.recall_vs_proposals`' dict.
        params: the proposer's parameters (from the folder's manifest).
        folder: the proposal folder.
        num_images, num_gt: images and (non-difficult) ground-truth boxes scored.
        timed: images with a recorded proposer time.
    """
    lines = [f"proposals {folder}: {', '.join(f'{k}={v!r}' for k, v in params.items())}",
             f"{num_images} images, {num_gt} ground-truth boxes (difficult excluded)"]
    for name, key in (("recall@0.5", "recall_50"), ("recall@0.7", "recall_70"), ("average recall", "average_recall"),
                      ("MABO", "mabo")):
        lines.append(f"{name:>16s}  {_pct(result[key])}")
    lines.append(f"{'boxes / image':>16s}  {result['boxes_per_image']:8.1f}")
    seconds = result["seconds_per_image"]
    lines.append(f"{'seconds / image':>16s}  {'n/a' if seconds is None else f'{seconds:.2f}'} (the proposer alone; "
                 f"{timed} of {num_images} images timed)")
    lines.append(f"\n{'top N':>6s} {'boxes/img':>9s} {'R@0.5':>6s} {'R@0.7':>6s} {'AR':>6s} {'MABO':>6s}")
    for j, n in enumerate(curve["counts"]):
        vals = " ".join(_pct(curve[k][j]) for k in ("recall_50", "recall_70", "average_recall", "mabo"))
        lines.append(f"{'all' if n is None else n:>6} {curve['boxes_per_image'][j]:9.1f} {vals}")
    return "\n".join(lines)


def undefined_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """Names of the headline figures that are undefined (None or NaN), e.g. a test split without objects."""
    return [k for k in HEADLINE_KEYS if k in metrics and nan_to_none(metrics[k]) is None]


def _partly_undefined(metrics: Mapping[str, Any]) -> str | None:
    """The warning for undefined parts of a defined result: VOC classes without ground truth or size
    ranges without objects, COCO stats of an area range without objects; None when there are none."""
    if metrics.get("metric") in ("voc07", "voc12"):
        absent = [k for k, v in metrics.get("per_class", {}).items() if nan_to_none(v) is None]
        empty = [k for k, v in metrics.get("by_size", {}).items() if nan_to_none(v["mAP"]) is None]
        parts = []
        if absent:
            parts.append(f"no ground truth for {len(absent)} class(es) {absent}: their AP is undefined (null) and "
                         "left out of the mAP")
        if empty:
            parts.append(f"no object in size range(s) {empty}: their AP is undefined (null)")
        return "; ".join(parts) or None
    if metrics.get("metric") == "coco":
        from visiontasks.evaluation.coco import COCO_STAT_NAMES

        stats = [k for k in COCO_STAT_NAMES if k != "AP" and k in metrics and nan_to_none(metrics[k]) is None]
        if stats:
            return (f"COCO stats {', '.join(stats)} are undefined (no ground truth in that area range) and written "
                    "as null")
    return None


def warn_undefined(metrics: Mapping[str, Any], what: str) -> None:
    """One warning line for each kind of undefined figure (NaN/None), naming the cause.

    A headline figure (no class or pixel to score at all); else VOC classes without ground truth
    (their AP is null, left out of the mAP), or COCO stats without objects in their area range.

    Args:
        metrics: a result dict of the tools.
        what: the data it was computed on, e.g. ``"split 'test' of VOC2007/"``.
    """
    undefined = undefined_metrics(metrics)
    partly = None if "mAP" in undefined and metrics.get("metric") != "coco" else _partly_undefined(metrics)
    if partly:
        warn(f"{what}: {partly}")
    if not undefined:
        return
    if "mAP" in undefined:
        warn(f"{what}: no class has ground truth to score, so mAP is undefined (written as null)")
    else:
        warn(f"{what}: no pixel has a ground-truth label (all ignore or empty), so "
             f"{', '.join(undefined)} {'is' if len(undefined) == 1 else 'are'} undefined (written as null)")


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Writes JSON atomically; NaN becomes null (strict JSON, no ``NaN`` token)."""
    text = json.dumps(_clean(obj), indent=2, default=float, allow_nan=False)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def segmentation_result(scores: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The tools' segmentation result from :func:`segmentation_scores`' output.

    Args:
        scores: ``{"miou", "pixel_accuracy", "mean_class_accuracy", "iou", "class_accuracy"}``.
        names: K class names, background (label 0) first.

    Returns:
        ``{"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class": {name: IoU},
        "per_class_accuracy": {name: accuracy}}`` (NaN where undefined).
    """
    return {
        "mIoU": float(scores["miou"]),
        "pixel_accuracy": float(scores["pixel_accuracy"]),
        "mean_class_accuracy": float(scores["mean_class_accuracy"]),
        "per_class": {name: float(v) for name, v in zip(names, scores["iou"])},
        "per_class_accuracy": {name: float(v) for name, v in zip(names, scores["class_accuracy"])},
    }
