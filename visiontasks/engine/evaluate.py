"""Run a model over a dataset and score it with the evaluators (used by the tools and the trainer).

Detection results: ``{"metric", "mAP", "per_class": {name: AP}}`` (plus raw precision/recall under
``"curves"`` for plotting). Segmentation results: ``{"mIoU", "pixel_accuracy",
"mean_class_accuracy", "per_class": {name: IoU}}``. Values are fractions in [0, 1]; a class
with nothing to score is NaN in ``per_class`` and left out of the mean.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from visiontasks.data import collate_fn
from visiontasks.evaluation import SegmentationEvaluator, VOCDetectionEvaluator, coco_evaluate
from visiontasks.evaluation import detections_to_coco
from visiontasks.evaluation.report import nan_to_none, segmentation_result

__all__ = ["predict_dataset", "detect", "evaluate_detection", "evaluate_segmentation", "nan_to_none",
           "segmentation_result"]


def _loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_fn)


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    num_workers: int = 0,
    forward: Callable[[nn.Module, list[torch.Tensor], list[dict]], list[Any]] | None = None,
    desc: str = "eval",
) -> Iterator[tuple[Any, dict]]:
    """Yields ``(prediction, target)`` per image, the model in eval mode, tensors on the CPU.

    Args:
        model: a detector (``model(images) -> list[dict]``) or, with ``forward``, anything.
        dataset: yields ``(image, target)`` as the datasets in ``visiontasks.data``.
        device: where the model runs.
        forward: ``forward(model, images, targets) -> per-image predictions``; default
            :func:`detect` (``model(images)``, with the targets' ``proposals`` when they carry them).
    """
    was_training = model.training
    model.eval()
    forward = forward or detect
    try:
        for images, targets in tqdm(_loader(dataset, batch_size, num_workers), desc=desc, leave=False):
            images = [img.to(device, non_blocking=True) for img in images]
            outputs = forward(model, images, targets)
            for out, tgt in zip(outputs, targets):
                if isinstance(out, dict):
                    out = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in out.items()}
                elif torch.is_tensor(out):
                    out = out.detach().cpu()
                yield out, tgt
    finally:
        model.train(was_training)


def detect(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> list[dict]:
    """A detector's eval forward; precomputed ``proposals`` in the targets are passed on."""
    if targets and all("proposals" in t for t in targets):
        device = images[0].device
        return model(images, proposals=[t["proposals"].to(device) for t in targets])
    return model(images)


def evaluate_detection(
    model: nn.Module,
    dataset: Dataset,
    metric: str = "voc07",
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    num_workers: int = 0,
    on_prediction: Callable[[dict, dict], None] | None = None,
) -> dict[str, Any]:
    """Scores a detector on ``dataset`` with VOC (``voc07``/``voc12``) or COCO (``coco``) mAP.

    Args:
        on_prediction: called with each image's prediction and target (e.g. to write results
            files from the same single inference pass).

    Returns:
        ``{"metric", "mAP", "per_class": {name: AP or NaN}, "curves": raw evaluator output}``.
        For ``coco`` the dict also carries pycocotools' other 11 stats (AP50 … ARl), ``per_class``
        holds each category's AP@[.5:.95] and ``mAP`` is COCO's AP@[.5:.95].
    """
    classes: Sequence[str] = dataset.classes
    if metric in ("voc07", "voc12"):
        evaluator = VOCDetectionEvaluator(len(classes), metric=metric)
        for pred, tgt in predict_dataset(model, dataset, device, batch_size, num_workers):
            evaluator.update([pred], [tgt])
            if on_prediction is not None:
                on_prediction(pred, tgt)
        res = evaluator.compute()
        per_class = {name: float(ap) for name, ap in zip(classes, res["ap"])}
        return {"metric": metric, "mAP": float(res["map"]), "per_class": per_class, "curves": res}
    if metric == "coco":
        coco = getattr(dataset, "coco", None)
        if coco is None:
            raise ValueError("metric 'coco' needs a COCODetection dataset (with a .coco ground truth)")
        results: list[dict] = []
        for pred, tgt in predict_dataset(model, dataset, device, batch_size, num_workers):
            if on_prediction is not None:
                on_prediction(pred, tgt)
            results += detections_to_coco(int(tgt["coco_id"]), pred["boxes"].numpy(), pred["scores"].numpy(),
                                          pred["labels"].numpy(), dataset.label_to_cat_id)
        res = coco_evaluate(coco, results)
        return {"metric": "coco", "mAP": float(res["stats"]["AP"]), "per_class": res["per_class"], **res["stats"]}
    raise ValueError(f"metric must be 'voc07', 'voc12' or 'coco', got {metric!r}")


def _segment(model: nn.Module, images: list[torch.Tensor], targets: list[dict] | None = None) -> list[torch.Tensor]:
    # Images of a batch may differ in size: run them one by one at full resolution.
    return [model(img[None])["out"][0].argmax(0) for img in images]


def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    on_prediction: Callable[[np.ndarray, dict], None] | None = None,
    metric: str = "miou",
) -> dict[str, Any]:
    """Scores a segmenter (``model(x)["out"]`` logits) on ``dataset`` with a confusion matrix.

    Args:
        num_classes: classes including background; default ``len(dataset.classes) + 1``.
        metric: "miou" (the only segmentation metric; the result holds pixel and class accuracy too).
        on_prediction: called with each (H, W) predicted label map and its target (e.g. to save PNGs).

    Returns:
        ``{"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class": {name: IoU}}``.
    """
    if metric != "miou":
        raise ValueError(f"segmentation metric must be 'miou', got {metric!r}")
    names = ["background", *dataset.classes]
    evaluator = SegmentationEvaluator(num_classes or len(names))
    for pred, tgt in predict_dataset(model, dataset, device, 1, num_workers, forward=_segment):
        evaluator.update(pred.numpy(), tgt["mask"].numpy())
        if on_prediction is not None:
            on_prediction(pred.numpy(), tgt)
    return segmentation_result(evaluator.compute(), names)
