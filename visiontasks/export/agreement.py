"""How close an int8 graph's inner tensor is to the float graph's, for models without trained weights.

    from visiontasks.export.agreement import feature_tensor, tensor_agreement
    name = feature_tensor("vgg_int8.fp32.onnx")   # the feature map entering RoI pooling, or the head's output
    tensor_agreement("vgg_int8.fp32.onnx", "vgg_int8.onnx", {"image": img}, name)  # {"rel_l2", "cosine", ...}

Random weights score every box near 1/C, so which boxes survive NMS is decided by rounding and
detection-level agreement (:func:`~visiontasks.export.quantize.detection_agreement`) says nothing.
A tensor before any ranking does: the backbone's feature map that enters RoI pooling (two-stage
detectors: the same for both graphs, whatever proposals come later) or, without RoI pooling, the
output of the last Conv / Gemm / MatMul (YOLOv1's S×S×(5B+C) predictions, a segmenter's logits).
The tensor keeps its name in the int8 graph (onnxruntime's QDQ quantizer renames only what it
inserts), so both graphs are run with that name added as an output.

Shape shorthand: image (3, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import os

import numpy as np

from visiontasks.export.detectors import ExportError

__all__ = ["feature_tensor", "tensor_agreement"]

_HEAVY = ("Conv", "Gemm", "MatMul")


def feature_tensor(fp32_path: str | os.PathLike) -> str:
    """The name of the tensor compared: the input of the first ``MaxRoiPool`` / ``RoiAlign`` node,
    else the output of the float graph's last Conv / Gemm / MatMul node.

    Raises:
        ExportError: the graph has neither.
    """
    import onnx

    nodes = onnx.load(str(fp32_path), load_external_data=False).graph.node
    pool = next((n for n in nodes if n.op_type in ("MaxRoiPool", "RoiAlign")), None)
    if pool is not None:
        return pool.input[0]
    heavy = [n for n in nodes if n.op_type in _HEAVY]
    if not heavy:
        raise ExportError(f"{fp32_path}: no RoI pooling and no {'/'.join(_HEAVY)} node to compare at")
    return heavy[-1].output[0]


def _run_with_output(path: str | os.PathLike, name: str, feeds: dict[str, np.ndarray], threads: int) -> np.ndarray:
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    if name not in {o.name for o in model.graph.output}:
        if not any(name in n.output for n in model.graph.node):
            raise ExportError(f"{path}: no tensor named {name!r}")
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run([name], feeds)[0]


def tensor_agreement(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, feeds: dict[str, np.ndarray],
                     name: str, threads: int = 1) -> dict[str, float]:
    """Runs both graphs on ``feeds`` and compares the tensor ``name`` of each.

    Args:
        fp32_path, int8_path: the float graph and its int8 version.
        feeds: the graphs' inputs (e.g. ``{"image": (3, H, W) float32}``).
        name: a tensor of both graphs (see :func:`feature_tensor`).
        threads: onnxruntime's intra-op threads.

    Returns:
        ``{"rel_l2": ‖q − f‖ / ‖f‖, "cosine": cos(q, f), "max_abs": max |q − f|, "ref_max_abs": max |f|}``
        (f the float tensor, q the int8 graph's, both flattened).
    """
    ref = _run_with_output(fp32_path, name, feeds, threads).astype(np.float64).ravel()
    test = _run_with_output(int8_path, name, feeds, threads).astype(np.float64).ravel()
    if ref.shape != test.shape:
        raise ExportError(f"{name}: shapes differ between the graphs ({ref.shape} vs {test.shape})")
    diff = test - ref
    norm = float(np.linalg.norm(ref))
    denom = norm * float(np.linalg.norm(test))
    return {"rel_l2": float(np.linalg.norm(diff)) / norm if norm else float(np.linalg.norm(diff)),
            "cosine": float(ref @ test) / denom if denom else 1.0,
            "max_abs": float(np.abs(diff).max(initial=0.0)), "ref_max_abs": float(np.abs(ref).max(initial=0.0))}
