"""A classic segmentation method scored over a VOC-layout split (``tools/eval.py seg --method``).

Shape shorthand: H, W = an image's height and width.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from visiontasks.classic import gt_to_fg_bg, segment_classic

__all__ = ["evaluate_classic"]


def evaluate_classic(method: str, dataset: Any, oracle_labels: bool = False, background: str = "background",
                     on_prediction: Callable[[np.ndarray, dict], None] | None = None) -> dict[str, Any]:
    """Runs ``method`` on every image of ``dataset`` and scores it with the segmentation evaluator.

    Without ``oracle_labels`` the method's map is foreground/background and so is the ground truth
    (:func:`~visiontasks.classic.labels.gt_to_fg_bg`); with it, each region takes its majority
    ground-truth class (an upper bound) and the C + 1 classes are scored.

    Args:
        method: a name of :data:`~visiontasks.classic.CLASSIC_METHODS`.
        dataset: a ``VOCSegmentation`` (its images are read as decoded uint8, no float round trip).
        oracle_labels: label regions with the ground truth's majority class.
        background: the name of label 0 in the result.
        on_prediction: called with each (H, W) predicted map and its target (e.g. to save PNGs).

    Returns:
        :func:`~visiontasks.evaluation.report.segmentation_result`'s dict.
    """
    from tqdm import tqdm

    from visiontasks.data import read_image
    from visiontasks.evaluation.report import segmentation_result
    from visiontasks.evaluation.segmentation import SegmentationEvaluator

    names = [background, *dataset.classes] if oracle_labels else [background, "foreground"]
    evaluator = SegmentationEvaluator(len(names))
    with tqdm(range(len(dataset)), desc=method, leave=False) as bar:
        for i in bar:
            rgb = read_image(dataset.image_path(i)).permute(1, 2, 0).numpy()
            target = dataset.get_annotation(i)
            gt = target["mask"].numpy()
            pred = segment_classic(method, rgb, gt=gt, oracle=oracle_labels)
            evaluator.update(pred, gt if oracle_labels else gt_to_fg_bg(gt))
            if on_prediction is not None:
                on_prediction(pred, target)
    return segmentation_result(evaluator.compute(), names)
