"""Evaluation: VOC detection AP (devkit-exact, vectorised), COCO through pycocotools, segmentation mIoU.

Pure functions on numpy arrays return dicts; accumulators (``update``/``compute``) wrap them for
the training loop.
"""
from visiontasks.evaluation.accumulators import VOCDetectionEvaluator
from visiontasks.evaluation.coco import COCO_STAT_NAMES, detections_to_coco, eval_coco
from visiontasks.evaluation.iou import box_iou, box_iou_voc, box_iou_voc_paired, mask_iou
from visiontasks.evaluation.plots import plot_pr_curves
from visiontasks.evaluation.proposals import (AR_THRESHOLDS, best_overlaps, plot_recall_vs_proposals, proposal_recall,
                                              recall_vs_proposals)
from visiontasks.evaluation.segmentation import SegmentationEvaluator, confusion_matrix, segmentation_scores
from visiontasks.evaluation.voc_detection import average_precision, eleven_point_thresholds, eval_detection_voc
from visiontasks.evaluation.voc_results import read_voc_results, results_filename, write_voc_results

__all__ = [
    "COCO_STAT_NAMES", "SegmentationEvaluator", "VOCDetectionEvaluator", "average_precision", "box_iou",
    "box_iou_voc", "box_iou_voc_paired", "confusion_matrix", "detections_to_coco", "eleven_point_thresholds",
    "eval_coco", "eval_detection_voc", "mask_iou", "plot_pr_curves", "read_voc_results", "results_filename",
    "segmentation_scores", "write_voc_results",
    "AR_THRESHOLDS", "best_overlaps", "plot_recall_vs_proposals", "proposal_recall", "recall_vs_proposals",
]
