"""``tools/export.py --quantize int8``: export the float graph, calibrate, quantize, compare.

    from visiontasks.export.int8 import export_int8
    export_int8(visiontasks.load_model("default"), "faster_rcnn", "default_int8.onnx")

Writes ``<out>`` (int8) and ``<out stem>.fp32.onnx`` (the float graph it came from, checked
against PyTorch as every export), each with its ``.json``. With no calibration folder the model's
own training data is used when it is the embedded dataset (the shipped default detector's); any
other dataset needs ``calib_root``. See :mod:`visiontasks.export.quantize` for the route.

Shape shorthand: image (3, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from visiontasks.export.detectors import ExportError
from visiontasks.export.quantize import calibration_images, int8_checks, quantize_int8, vnni_warning

__all__ = ["export_int8", "default_calibration_root"]


def default_calibration_root(config: dict[str, Any], name: str) -> Path:
    """The embedded dataset's folder when the model trained on it; otherwise a one-line error."""
    data = config.get("data", {}) or {}
    if data.get("dataset", "embedded") != "embedded":
        raise ValueError(f"{name} was trained on {data.get('dataset')!r} data: give its training images with "
                         "--calib-root DIR [--calib-split trainval]")
    from visiontasks.data import build_embedded_dataset

    return build_embedded_dataset(data.get("root"))


def export_int8(predictor, name: str, out: str | os.PathLike, size: Sequence[int] = (3, 224, 288),
                check_images: Sequence[tuple[str, torch.Tensor]] = (), calib_root: str | None = None,
                calib_split: str = "trainval", calib_count: int = 32, num_proposals: int = 300,
                echo=print) -> int:
    """Exports ``predictor``'s model to float ONNX, quantizes it to int8 and reports the agreement.

    Args:
        predictor: what ``visiontasks.load_model`` returns (model, task, classes, config, score_thresh).
        name: the model's name for messages.
        out: the int8 .onnx file.
        size: (3, H, W) traced (segmenters: the one exported size; calibration images are resized to it).
        check_images: (description, image) pairs compared (float graph vs PyTorch, int8 vs float).
        calib_root, calib_split, calib_count: the calibration images (default: see the module).
        echo: where the report lines go.

    Returns:
        0 (the tool's exit code).

    Raises:
        ExportError: a model that cannot be exported or quantized (one line naming why).
        InputError: calibration images that do not exist.
    """
    from visiontasks.engine.run import write_json
    from visiontasks.export.onnx import export_onnx

    if predictor.task == "detection":
        from visiontasks.export.detectors import detector_for_export

        detector_for_export(predictor.model, name)  # R-CNN, SPP-net: refused here, one line naming the part
    if getattr(predictor.model, "needs_proposals", False):
        raise ExportError(f"{name}: --quantize int8 covers detectors that make their own proposals and segmenters; "
                          "this model takes proposals (calibration would need them)")
    root = Path(calib_root) if calib_root else default_calibration_root(predictor.config, name)
    seg = predictor.task == "segmentation"
    calib = calibration_images(root, calib_split, calib_count, size if seg else None)  # bad paths fail first
    if (line := vnni_warning()) is not None:
        echo(line)
    out = Path(out)
    fp32 = out.with_name(out.stem + ".fp32.onnx")
    report = export_onnx(predictor.model, predictor.task, fp32, name=name, image_size=size,
                         num_proposals=num_proposals, check_images=check_images)
    meta = {"model": name, "task": predictor.task, "classes": list(predictor.classes), "inputs": report.inputs,
            "outputs": report.outputs, "score_thresh": predictor.score_thresh, "input_size": list(size),
            "precision": "fp32", "checks": report.checks}
    write_json(meta, fp32.with_suffix(".json"))
    quantize_int8(fp32, out, calib, label=name)
    compared = [*check_images, *[(f"calibration image {k}", img) for k, img in enumerate(calib[:3])]]
    agreement = int8_checks(fp32, out, predictor.task, compared)
    write_json({**meta, "precision": "int8", "float_model": fp32.name, "checks": agreement,
                "calibration": {"root": str(root), "split": calib_split, "images": len(calib)}}, out.with_suffix(".json"))
    echo(f"wrote {fp32} (float; onnxruntime matches PyTorch on {len(report.checks)} images)")
    echo(f"wrote {out} ({name}, int8, calibrated on {len(calib)} images of {root} {calib_split}); int8 against float:")
    for line in agreement:
        echo(f"  {line}")
    return 0
