"""Evaluation: VOC detection AP (devkit-exact, vectorised), COCO through pycocotools, segmentation mIoU,
and why detections fall short: TIDE's error breakdown (``tide``), the detection confusion matrix
(``det_confusion``), AP by object size (``voc.score``); the HTML report of ``tools/eval.py --report``
(``report_html`` page and sections, ``report_gallery`` error gallery and worst segmentations,
``report_draw`` pictures, ``report_cli`` the tool's before/after calls).

Pure functions on numpy arrays return dicts; accumulators (``update``/``compute``) wrap them for
the training loop. Names are imported on first use (PEP 562), so that scoring results files
(``tools/eval.py det``) loads neither torch nor matplotlib.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "accumulators": ("VOCDetectionEvaluator",),
    "det_confusion": ("detection_confusion_matrix",),
    "coco": ("COCO_STAT_NAMES", "coco_evaluate", "coco_result", "coco_tide_errors", "detections_to_coco", "eval_coco",
             "evaluate_coco_files"),
    "iou": ("box_iou", "box_iou_voc", "box_iou_voc_paired", "mask_iou"),
    "plots": ("plot_pr_curves",),
    "proposals": ("AR_THRESHOLDS", "best_overlaps", "plot_recall_vs_proposals", "proposal_recall",
                  "recall_vs_proposals"),
    "seg_files": ("score_label_pngs",),
    "segmentation": ("SegmentationEvaluator", "confusion_matrix", "segmentation_scores"),
    "voc.ap": ("average_precision", "eleven_point_thresholds", "eval_detection_voc"),
    "voc.ground_truth": ("load_detection_ground_truth",),
    "voc.results": ("read_voc_results", "results_classes", "results_filename", "write_voc_results"),
    "voc.score": ("evaluate_voc_files", "score_voc", "voc_errors", "voc_result"),
    "tide": ("format_tide", "tide_errors"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
