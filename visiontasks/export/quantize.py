"""int8 post-training static quantization of an exported .onnx file (onnxruntime ``quantize_static``).

    from visiontasks.export.quantize import calibration_images, quantize_int8
    images = calibration_images(root, "trainval", 32)              # (3, H, W) floats in [0, 1]
    quantize_int8("default.onnx", "default_int8.onnx", images)

QDQ format, weights int8 symmetric per output channel, activations uint8 (MinMax ranges collected
on the calibration images) — the u8s8 combination onnxruntime runs with AVX-512 VNNI / AVX-VNNI
``vpdpbusd`` on x86. Only the compute-heavy operators are quantized (:data:`INT8_OPS`: Conv,
Gemm, MatMul); everything else of the graph stays float32: the normalisation and resizing, the
anchor / box decoding, RoI pooling (``MaxRoiPool``), NMS and the score threshold — box
coordinates never pass through 8 bits.

Why onnxruntime and not PyTorch: torch 2.14 no longer ships the PT2E quantizers
(``torch.ao.quantization.quantizer`` and ``X86InductorQuantizer`` moved to the separate
``torchao`` package), its eager ``torch.ao`` route needs QuantStub surgery of every model, and
the int8 graph onnxruntime builds (QLinearConv / MatMulInteger) is the one users deploy anyway.

Shape shorthand: image (3, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from visiontasks.errors import InputError
from visiontasks.export.detectors import ExportError

__all__ = ["INT8_OPS", "untie_initializers", "cpu_flags", "has_vnni", "vnni_warning", "calibration_images",
           "quantize_int8", "detection_agreement", "mask_agreement"]

#: The operators quantized; the rest of the graph stays float32 (see the module docstring).
INT8_OPS = ("Conv", "Gemm", "MatMul")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it is not readable, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the CPU has 8-bit dot-product instructions (x86 AVX-512 VNNI / AVX-VNNI, Arm dotprod)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "asimddp"})


def vnni_warning(flags: set[str] | None = None) -> str | None:
    """One warning line when int8 will run without integer dot products (None when it has them)."""
    if has_vnni(flags):
        return None
    return (f"warning: this CPU ({platform.machine() or 'unknown'}) has no VNNI / dot-product instructions: the int8 "
            "model runs, but usually slower than fp32 here (onnxruntime widens 8-bit products to 16 bits)")


def calibration_images(root: str | os.PathLike, split: str, count: int,
                       size: Sequence[int] | None = None) -> list[torch.Tensor]:
    """The first ``count`` images of a VOC-layout split, as (3, H, W) floats in [0, 1].

    Args:
        root: VOC-layout folder (``ImageSets/Main/<split>.txt`` or ``ImageSets/Segmentation/``, ``JPEGImages/``).
        split: the split's name (the training split: calibration must not see the test images).
        count: how many images (the first ones of the split file, in its order).
        size: (3, H, W) to resize each image to (segmenters are exported for one size), or None.

    Raises:
        InputError: the folder, split file or an image does not exist or cannot be read.
    """
    import cv2

    from visiontasks.data import read_image

    root = Path(root)
    if count < 1:
        raise InputError(root, f"--calib-images must be at least 1, not {count}")
    if not root.is_dir():
        raise InputError(root, "calibration folder does not exist")
    lists = [root / "ImageSets" / sub / f"{split}.txt" for sub in ("Main", "Segmentation")]
    listing = next((p for p in lists if p.is_file()), None)
    if listing is None:
        raise InputError(lists[0], f"no split {split!r} to calibrate on")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()][:count]
    if not ids:
        raise InputError(listing, "the calibration split lists no images")
    images = []
    for image_id in ids:
        path = root / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            raise InputError(path, "calibration image does not exist")
        image = read_image(path).float() / 255.0
        if size is not None and tuple(image.shape[1:]) != tuple(size[1:]):
            array = cv2.resize(image.permute(1, 2, 0).numpy(), (int(size[2]), int(size[1])),
                               interpolation=cv2.INTER_LINEAR)
            image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        images.append(image.contiguous())
    return images


def untie_initializers(graph) -> int:
    """Replaces each ``Identity`` of an initializer by a copy of that initializer, in place.

    The TorchScript exporter keeps one copy of equal constant tensors and feeds the others through
    ``Identity`` nodes: with zero-initialised biases (the VGG16 configs' untrained layers) most
    convolutions then take their bias from an ``Identity``. onnxruntime's quantizer quantizes no bias
    behind one, and its QDQ fusion leaves every such convolution in float (DequantizeLinear → Conv →
    QuantizeLinear instead of ``QLinearConv``): 11 of FCN-8s's 18 convolutions, measured, among them
    fc7 and most of conv3–conv5. With each its own initializer, all 18 become ``QLinearConv``.

    Args:
        graph: an ``onnx.ModelProto`` (changed in place).

    Returns:
        How many ``Identity`` nodes were replaced.
    """
    from onnx import TensorProto

    inits = {t.name: t for t in graph.graph.initializer}
    outputs = {o.name for o in graph.graph.output}  # a graph output stays a node's output
    tied = [n for n in graph.graph.node if n.op_type == "Identity" and len(n.input) == 1 and n.input[0] in inits
            and n.output[0] not in outputs]
    for node in tied:
        copy = TensorProto()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        graph.graph.initializer.append(copy)
        graph.graph.node.remove(node)
    return len(tied)


class _Reader:
    """onnxruntime's CalibrationDataReader over our images (the input name is the graph's first)."""

    def __init__(self, name: str, images: Sequence[torch.Tensor], batched: bool) -> None:
        self._feeds = iter([{name: (img[None] if batched else img).numpy().astype(np.float32)} for img in images])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def quantize_int8(fp32_path: str | os.PathLike, out: str | os.PathLike, images: Sequence[torch.Tensor],
                  label: str = "") -> Path:
    """Quantizes an exported float .onnx file to int8, calibrated on ``images``.

    Args:
        fp32_path: the float graph written by :func:`~visiontasks.export.onnx.export_onnx`.
        out: the int8 .onnx file to write (atomically).
        images: calibration images, (3, H, W) floats in [0, 1] (segmenters: at the exported size).
        label: the model's name for messages.

    Returns:
        ``out`` as a Path.

    Raises:
        ExportError: the graph takes proposals (calibration would need them), has nothing to quantize,
            or onnxruntime's quantizer fails on it (one line).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    label = label or Path(fp32_path).stem
    graph = onnx.load(str(fp32_path))
    inputs = [i.name for i in graph.graph.input]
    if "proposals" in inputs:
        raise ExportError(f"{label}: --quantize int8 covers detectors that make their own proposals and segmenters; "
                          "this graph takes proposals (Fast R-CNN)")
    heavy = sum(n.op_type in INT8_OPS for n in graph.graph.node)
    if heavy == 0:
        raise ExportError(f"{label}: the graph has no {'/'.join(INT8_OPS)} layer to quantize")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    source, untied = str(fp32_path), None
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # quantize_static's "consider pre-processing" advice, twice, on the root logger
    try:
        if untie_initializers(graph):  # else onnxruntime leaves those convolutions in float
            fd, untied = tempfile.mkstemp(suffix=".untied.onnx", dir=out.parent)
            os.close(fd)
            onnx.save(graph, untied)
            source = untied
        del graph
        try:
            quantize_static(source, tmp, _Reader(inputs[0], images, batched=inputs[0] == "images"),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OPS), per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # onnxruntime's calibration or QDQ insertion failed on this graph
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ExportError(f"{label}: onnxruntime cannot quantize this graph to int8: {first}") from None
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        root_logger.setLevel(level)
        for path in (tmp, untied):
            if path is not None and os.path.exists(path):
                os.remove(path)
    return out


def detection_agreement(ref: dict, test: dict, min_score: float = 0.5, iou: float = 0.5) -> float | None:
    """The share of ``ref``'s confident boxes (score ≥ ``min_score``) that ``test`` also finds:
    a box of the same label with IoU ≥ ``iou`` (each test box used once, ref boxes by score).

    Args:
        ref: ``{"boxes" (N, 4), "scores" (N,), "labels" (N,)}``, e.g. the fp32 model's.
        test: the same for the model compared, e.g. the int8 one.

    Returns:
        A fraction in [0, 1], or None when ``ref`` has no confident box.
    """
    from torchvision.ops import box_iou

    keep = ref["scores"] >= min_score
    boxes, labels = ref["boxes"][keep], ref["labels"][keep]
    order = ref["scores"][keep].argsort(descending=True)
    if len(order) == 0:
        return None
    if len(test["boxes"]) == 0:
        return 0.0
    overlap = box_iou(boxes.float(), test["boxes"].float())
    overlap[labels[:, None] != test["labels"][None, :]] = 0.0
    free = torch.ones(len(test["boxes"]), dtype=torch.bool)
    found = 0
    for i in order.tolist():
        candidates = torch.where(free, overlap[i], torch.zeros_like(overlap[i]))
        j = int(candidates.argmax())
        if candidates[j] >= iou:
            free[j] = False
            found += 1
    return found / len(order)


def mask_agreement(ref_logits: torch.Tensor, test_logits: torch.Tensor) -> float:
    """The share of pixels whose arg-max class is the same in both (B, C, H, W) logits."""
    return float((ref_logits.argmax(1) == test_logits.argmax(1)).float().mean())


def int8_checks(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, task: str,
                images: Sequence[tuple[str, torch.Tensor]], threads: int = 2) -> list[str]:
    """Runs the float and int8 graphs on the same images; one line per image saying how they agree.

    Detectors: the share of the float graph's boxes with score ≥ 0.5 that the int8 graph finds
    (same label, IoU ≥ 0.5, :func:`detection_agreement`). Segmenters: the share of pixels of the same class.
    """
    from visiontasks.export.onnx_predictor import load_onnx

    ref, test = load_onnx(fp32_path, threads), load_onnx(int8_path, threads)
    lines = []
    for desc, image in images:
        if task == "segmentation":
            a, b = ref(image[None])["out"], test(image[None])["out"]
            lines.append(f"{desc}: {mask_agreement(a, b):.2%} of pixels of the same class")
            continue
        a, b = ref([image])[0], test([image])[0]
        share = detection_agreement(a, b)
        found = "no box with score >= 0.5" if share is None else f"{share:.0%} of the float boxes with score >= 0.5 found"
        lines.append(f"{desc}: {len(a['scores'])} float / {len(b['scores'])} int8 detections, {found} (IoU >= 0.5)")
    return lines
