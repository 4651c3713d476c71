"""Scoring label PNGs against a VOC-layout split's ``SegmentationClass/`` masks (no images read).

Shape shorthand: H, W = a mask's height and width.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from visiontasks.errors import InputError
from visiontasks.evaluation.report import segmentation_result
from visiontasks.evaluation.segmentation import SegmentationEvaluator
from visiontasks.evaluation.voc.ground_truth import split_ids

__all__ = ["score_label_pngs"]


def _labels(path: Path, what: str) -> np.ndarray:
    from visiontasks.data import read_label_png  # PIL's palette handling lives with the datasets

    if not path.is_file():
        raise InputError(path, f"{what} is missing")
    return read_label_png(path)


def score_label_pngs(root: str | os.PathLike[str], split: str, predictions: str | os.PathLike[str],
                     names: Sequence[str]) -> dict[str, Any]:
    """mIoU and accuracies of ``predictions/<id>.png`` against ``root/SegmentationClass/<id>.png``.

    Args:
        root: VOC-layout folder (``SegmentationClass/``, ``ImageSets/Segmentation/<split>.txt``).
        split: split name.
        predictions: folder of (H, W) label PNGs (palette or grey indices), one per image id.
        names: the K class names, label 0 first.

    Returns:
        :func:`~visiontasks.evaluation.report.segmentation_result` of the dataset-level confusion matrix.

    Raises:
        InputError: a missing mask or prediction, a size that differs from the ground-truth mask's,
            or a label outside ``0..K-1`` (255 allowed in the ground truth).
    """
    root, predictions = Path(root), Path(predictions)
    evaluator = SegmentationEvaluator(len(names))
    with tqdm(split_ids(root, split, "Segmentation"), desc="score", leave=False) as bar:
        for image_id in bar:
            gt_path = root / "SegmentationClass" / f"{image_id}.png"
            gt = _labels(gt_path, f"ground-truth mask of image {image_id!r} of split {split!r}")
            bad = np.unique(gt[(gt >= len(names)) & (gt != 255)])
            if bad.size:
                raise InputError(gt_path, f"mask holds labels {bad.tolist()}, beyond the {len(names) - 1} classes")
            path = predictions / f"{image_id}.png"
            pred = _labels(path, f"prediction for image {image_id!r} of split {split!r}")
            if pred.shape != gt.shape:
                raise InputError(path, f"mask size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's "
                                       f"{gt.shape[1]}x{gt.shape[0]} ({gt_path})")
            bad = np.unique(pred[pred >= len(names)])
            if bad.size:
                raise InputError(path, f"label values {bad.tolist()} outside 0..{len(names) - 1}")
            evaluator.update(pred, gt)
    return segmentation_result(evaluator.compute(), names)
