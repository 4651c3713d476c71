"""Run a model over a dataset and score it with the evaluators (used by the tools and the trainer).

Detection results: ``{"metric", "iou", "reference", "mAP", "per_class": {name: AP}}`` (plus raw
precision/recall under ``"curves"`` for plotting; COCO: its 12 stats). Segmentation results:
``{"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class": {name: IoU}}``. Values are
fractions in [0, 1]; a class with nothing to score is NaN in ``per_class`` and left out of the mean.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from visiontasks.data import collate_fn
from visiontasks.evaluation import SegmentationEvaluator, VOCDetectionEvaluator
from visiontasks.evaluation import detections_to_coco, evaluate_coco_files
from visiontasks.evaluation.report import nan_to_none, segmentation_result
from visiontasks.evaluation.voc.score import VOC_METRICS, check_voc_options, voc_errors, voc_result

__all__ = ["predict_dataset", "detect", "evaluate_detection", "attach_proposals", "evaluate_proposals",
           "evaluate_segmentation", "nan_to_none", "segmentation_result"]


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
    iou_thresh: float = 0.5,
    reference: str = "devkit",
    errors: bool = False,
) -> dict[str, Any]:
    """Scores a detector on ``dataset`` with VOC (``voc07``/``voc12``) or COCO (``coco``) mAP.

    The one scoring path of a model: the trainer and ``tools/eval.py det --checkpoint`` call it,
    and results files end in the same result (:mod:`visiontasks.evaluation.voc.score`).

    Args:
        on_prediction: called with each image's prediction and target (e.g. to write results
            files from the same single inference pass).
        iou_thresh: VOC metrics: the overlap a true positive needs.
        reference: VOC metrics: ``"devkit"`` (``VOCevaldet.m``) or ``"voc_eval"`` (py-faster-rcnn).
        errors: add TIDE's error breakdown (``"errors"``, :mod:`visiontasks.evaluation.tide`), the
            confusion matrix (``"confusion"``, :mod:`visiontasks.evaluation.det_confusion`) and, for
            VOC metrics, AP by object size (``"by_size"``, :func:`~visiontasks.evaluation.voc.score.voc_by_size`).

    Returns:
        VOC: ``{"metric", "iou", "reference", "mAP", "per_class": {name: AP or NaN}, "curves": raw
        evaluator output}``. COCO: :func:`~visiontasks.evaluation.coco.coco_result` — pycocotools'
        12 stats by name (AP50 … ARl), ``per_class`` each category's AP@[.5:.95], ``mAP`` COCO's
        AP@[.5:.95] and its printed ``summary``.
    """
    classes: Sequence[str] = dataset.classes
    if metric in VOC_METRICS:
        check_voc_options(metric, iou_thresh, reference)
        evaluator = VOCDetectionEvaluator(len(classes), metric=metric, iou_thresh=iou_thresh, reference=reference)
        for pred, tgt in predict_dataset(model, dataset, device, batch_size, num_workers):
            evaluator.update([pred], [tgt])
            if on_prediction is not None:
                on_prediction(pred, tgt)
        result = voc_result(evaluator.compute(), classes, metric, iou_thresh, reference)
        if errors:
            arrays = evaluator.arrays()
            result.update(voc_errors(arrays[:3], arrays[3:], classes, metric, iou_thresh, reference))
        return result
    if metric == "coco":
        if (iou_thresh, reference) != (0.5, "devkit"):
            raise ValueError("iou_thresh and reference apply to voc07/voc12; COCO reports AP50, AP75 and AP@[.5:.95]")
        coco = getattr(dataset, "coco", None)
        if coco is None:
            raise ValueError("metric 'coco' needs a COCODetection dataset (with a .coco ground truth)")
        results: list[dict] = []
        for pred, tgt in predict_dataset(model, dataset, device, batch_size, num_workers):
            if on_prediction is not None:
                on_prediction(pred, tgt)
            results += detections_to_coco(int(tgt["coco_id"]), pred["boxes"].numpy(), pred["scores"].numpy(),
                                          pred["labels"].numpy(), dataset.label_to_cat_id)
        return evaluate_coco_files(coco, results, errors=errors)
    raise ValueError(f"metric must be 'voc07', 'voc12' or 'coco', got {metric!r}")


def attach_proposals(model: nn.Module, dataset: Dataset, folder: str | None = None) -> None:
    """Gives ``dataset`` the proposals of a detector fed precomputed ones (``model.needs_proposals``).

    Args:
        model: the detector; one that makes its own proposals takes none (``folder`` is then an error).
        dataset: a VOC or COCO dataset; its ``proposals(image_id)`` is set.
        folder: a proposal folder written by ``tools/propose.py``; None: each image's proposals are
            computed with the model's own method (:meth:`propose`) when it is read.

    Raises:
        ValueError: a folder given for a model that makes its own proposals.
    """
    needs = bool(getattr(model, "needs_proposals", False))
    if folder is not None:
        if not needs:
            raise ValueError(f"proposals {folder} given, but the model makes its own proposals")
        from visiontasks.data.proposals import ProposalStore

        dataset.proposals = ProposalStore(folder, model.proposal_params)
    elif needs:
        from visiontasks.data import read_image

        index = {image_id: k for k, image_id in enumerate(dataset.ids)}

        def proposals(image_id: str) -> torch.Tensor:
            return model.propose(read_image(dataset.image_path(index[image_id])).float() / 255.0)

        dataset.proposals = proposals


def evaluate_proposals(root: str | os.PathLike[str], split: str, folder: str | os.PathLike[str],
                       classes: Sequence[str] | str | None = None, top_n: int | None = None,
                       plot: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Scores a proposal folder (``tools/propose.py``) against a VOC-layout split's ground truth.

    Args:
        root: VOC-layout folder (``Annotations/``, ``ImageSets/Main/``).
        split: split name.
        folder: the proposal folder.
        classes: class names, ``"auto"`` or None (VOC's 20).
        top_n: score only the first N proposals of each image.
        plot: draw recall against the number of proposals into this PNG (the summary says so).

    Returns:
        ``{"recall_50", "recall_70", "average_recall", "mabo", "boxes_per_image", "seconds_per_image"}``
        (None where undefined; seconds of the proposer from the folder's timing, None if unknown),
        plus ``"curves"`` (recall against the number of proposals) and the printable ``"summary"``.
    """
    from visiontasks.data.proposals import read_manifest, read_proposals, read_timing
    from visiontasks.evaluation import proposal_recall, recall_vs_proposals
    from visiontasks.evaluation.report import format_proposals
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth

    params = read_manifest(folder)["params"]
    dataset = load_detection_ground_truth(root, split, classes)
    with tqdm(dataset.ids, desc="read", leave=False) as bar:  # closed (line cleared) before an error is printed
        props = [read_proposals(folder, image_id).numpy() for image_id in bar]
    gt = (dataset.boxes, dataset.labels, dataset.difficult)
    res = proposal_recall(props, *gt, top_n=top_n)
    timing = read_timing(folder)
    seconds = [timing[i] for i in dataset.ids if i in timing]
    result = {k: nan_to_none(res[k]) for k in ("recall_50", "recall_70", "average_recall", "mabo", "boxes_per_image")}
    result["seconds_per_image"] = float(np.mean(seconds)) if seconds else None
    counts = [n for n in (10, 20, 50, 100, 200, 500, 1000, 2000) if top_n is None or n < top_n] + [top_n]
    curve = recall_vs_proposals(props, *gt, counts=counts)
    summary = format_proposals(result, curve, params, str(folder), res["num_images"], res["num_gt"], len(seconds))
    if plot is not None:
        from visiontasks.evaluation import plot_recall_vs_proposals

        plot_recall_vs_proposals(curve, plot, title=f"{params.get('method')} {params.get('mode', '')} on "
                                                    f"{Path(root).name} {split}")
        summary += f"\nwrote {plot}"
    return {**result, "curves": curve, "summary": summary}


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
    background: str = "background",
) -> dict[str, Any]:
    """Scores a segmenter (``model(x)["out"]`` logits) on ``dataset`` with a confusion matrix.

    Args:
        num_classes: classes including background; default ``len(dataset.classes) + 1``.
        metric: "miou" (the only segmentation metric; the result holds pixel and class accuracy too).
        on_prediction: called with each (H, W) predicted label map and its target (e.g. to save PNGs).
        background: the name of label 0 in the result.

    Returns:
        ``{"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class": {name: IoU}}``.
    """
    if metric != "miou":
        raise ValueError(f"segmentation metric must be 'miou', got {metric!r}")
    names = [background, *dataset.classes]
    evaluator = SegmentationEvaluator(num_classes or len(names))
    for pred, tgt in predict_dataset(model, dataset, device, 1, num_workers, forward=_segment):
        evaluator.update(pred.numpy(), tgt["mask"].numpy())
        if on_prediction is not None:
            on_prediction(pred.numpy(), tgt)
    return segmentation_result(evaluator.compute(), names)
