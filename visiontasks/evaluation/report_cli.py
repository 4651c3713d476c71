"""``tools/eval.py det|seg --report DIR``: what the tool calls before and after its evaluation.

:func:`prepare_report` runs before any work (a bad folder costs nothing) and turns on what the
report shows; :func:`write_report` runs after the result has been printed and written (``--out``),
so a failing report loses nothing. Both read the tool's options namespace: ``task``, ``report``,
``root``, ``split``, ``classes``, ``images``, ``checkpoint``; for ``det`` also ``detections``,
``metric``, ``annotations``, ``iou_type``, ``errors``, ``cache_dir``/``no_cache`` and ``recorded``
(``(dataset, [(prediction, target), ...])`` of a model run, ``--checkpoint`` or ``--onnx``, any
``--dataset`` format: the boxes the evaluator saw, the images from ``dataset.image_path``); for ``seg`` also
``predictions`` and ``seg_records`` (the hook the tool passes as ``on_prediction``). ``det --report``
implies ``--errors``; with ``--iou-type segm`` (masks) it is refused in one line, as ``--errors`` is.

Gallery without images: the report is written without it, its section and one printed line saying
why (no ``--images`` for results files) — the rest of the report does not need the images.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.report import warn
from visiontasks.evaluation.report_gallery import DetectionInputs, WorstSegmentations, gallery_html
from visiontasks.evaluation.report_html import check_report_dir, det_sections, seg_sections, write_html

__all__ = ["prepare_report", "write_report", "NO_IMAGES"]

NO_IMAGES = "no images to draw on: pass --images DIR (the split's JPEGImages/) or evaluate a --checkpoint"
_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def prepare_report(args: argparse.Namespace) -> None:
    """Refuses a bad ``--report``/``--images`` folder before the run; det: adds the error breakdown (boxes)."""
    check_report_dir(args.report)
    images = getattr(args, "images", None)
    if images is not None and not Path(images).is_dir():
        raise InputError(images, "is not a folder (--images: the images to draw the gallery on)")
    if args.task == "det":
        if args.iou_type != "bbox":
            raise ValueError("--report draws box detections and their errors; --iou-type segm is not supported")
        args.errors = True
    elif not args.predictions:
        args.seg_records = WorstSegmentations(foreground_background=bool(args.method and not args.oracle_labels))


def _finder(folder: Path | None, names: list[str]) -> Callable[[int], Path | None] | None:
    if folder is None:
        return None

    def find(i: int) -> Path | None:
        name = names[i]
        candidates = [folder / name] if Path(name).suffix else [folder / f"{name}{s}" for s in _SUFFIXES]
        return next((p for p in candidates if p.is_file()), None)
    return find


def _recorded_inputs(args: argparse.Namespace) -> DetectionInputs:
    """The boxes of a model run (``--checkpoint``/``--onnx``, any dataset format) as the evaluator saw them."""
    dataset, pairs = args.recorded
    index = {str(i): k for k, i in enumerate(dataset.ids)}

    def column(items: list[dict], key: str, dtype: type, shape: tuple[int, ...]) -> list[np.ndarray]:
        # a target without "difficult" has none (as VOCDetectionEvaluator.update reads it)
        return [np.asarray(d[key] if d.get(key) is not None else np.zeros(len(d["labels"])), dtype).reshape(shape)
                for d in items]

    def image_path(i: int) -> Path | None:
        path = Path(dataset.image_path(index[ids[i]]))
        return path if path.is_file() else None

    preds, tgts = [p for p, _ in pairs], [t for _, t in pairs]
    ids = [str(t["image_id"]) for t in tgts]
    return DetectionInputs(
        (column(preds, "boxes", np.float64, (-1, 4)), column(preds, "labels", np.int64, (-1,)),
         column(preds, "scores", np.float64, (-1,))),
        (column(tgts, "boxes", np.float64, (-1, 4)), column(tgts, "labels", np.int64, (-1,)),
         column(tgts, "difficult", bool, (-1,))),
        list(dataset.classes), ids, "voc", image_path)


def _voc_inputs(args: argparse.Namespace, classes: list[str]) -> DetectionInputs:
    from visiontasks.evaluation.voc.cache import default_cache_dir
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth
    from visiontasks.evaluation.voc.results import read_voc_results

    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    gt = load_detection_ground_truth(args.root, args.split, classes, cache_dir=cache)
    preds = read_voc_results(args.detections, args.split, gt.classes, gt.ids)
    return DetectionInputs(preds, (gt.boxes, gt.labels, gt.difficult), gt.classes, list(gt.ids), "voc",
                           _finder(Path(args.images) if args.images else None, list(gt.ids)))


def _coco_inputs(args: argparse.Namespace) -> DetectionInputs:
    from visiontasks.evaluation.coco import coco_arrays, detections_to_coco
    from visiontasks.evaluation.coco_io import load_coco_gt

    gt = load_coco_gt(args.annotations)
    results: Any = args.detections
    if args.checkpoint:
        dataset, pairs = args.recorded
        results = [d for p, t in pairs for d in detections_to_coco(int(t["coco_id"]), np.asarray(p["boxes"]),
                                                                   np.asarray(p["scores"]), np.asarray(p["labels"]),
                                                                   dataset.label_to_cat_id)]
    preds, gts, names = coco_arrays(gt, results)
    images = gt.dataset.get("images", [])
    return DetectionInputs(preds, gts, names, [str(img.get("file_name", img["id"])) for img in images], "xywh",
                           _finder(Path(args.images) if args.images else None,
                                   [str(img.get("file_name", "")) for img in images]))


def _det_report(args: argparse.Namespace, result: Mapping[str, Any]) -> list[str]:
    from visiontasks.evaluation.tide import tide_errors

    if args.metric == "coco":
        inputs = _coco_inputs(args)
    elif getattr(args, "recorded", None) is not None:
        inputs = _recorded_inputs(args)
    else:
        inputs = _voc_inputs(args, list(result["per_class"]))
    tide = None
    if result.get("errors"):
        tide = tide_errors(*inputs.preds, *inputs.gts, box_format=inputs.box_format, per_detection=True)
    if inputs.image_path is None:
        warn(f"report written without the gallery: {NO_IMAGES}")
    return det_sections(result, Path(args.report), gallery_html(inputs, tide, NO_IMAGES))


def _seg_report(args: argparse.Namespace, result: Mapping[str, Any]) -> list[str]:
    names = list(result["per_class"])
    records = getattr(args, "seg_records", None)
    if records is None:  # label PNGs: read them again (the scoring pass kept nothing)
        from visiontasks.data import read_label_png
        from visiontasks.evaluation.voc.ground_truth import split_ids

        records = WorstSegmentations()
        for image_id in split_ids(Path(args.root), args.split, "Segmentation"):
            records.add(image_id, read_label_png(Path(args.predictions) / f"{image_id}.png"),
                        read_label_png(Path(args.root) / "SegmentationClass" / f"{image_id}.png"))
    folder = Path(args.root) / "JPEGImages"
    return seg_sections(result, records.matrix(len(names)), names,
                        records.html(lambda i: next((p for p in (folder / f"{i}{s}" for s in _SUFFIXES)
                                                     if p.is_file()), None), names))


def write_report(args: argparse.Namespace, result: Mapping[str, Any], argv: list[str] | None = None) -> Path:
    """Writes ``args.report/index.html`` from the evaluation's full result (curves included).

    Args:
        args: the tool's options (see the module docstring).
        result: the evaluation result before :func:`~visiontasks.evaluation.report.public_metrics`.
        argv: the command line, shown on the page (default ``sys.argv``).

    Returns:
        The page's path.
    """
    sections = (_det_report if args.task == "det" else _seg_report)(args, result)
    what = "detection" if args.task == "det" else "segmentation"
    where = f"{args.root} split {args.split}" if getattr(args, "root", None) else str(getattr(args, "annotations", ""))
    command = shlex.join(["python", *(argv if argv is not None else sys.argv)])
    return write_html(args.report, f"visiontasks {what} evaluation: {where}", sections, command)
