"""Run an exported .onnx file (float or int8) where a visiontasks model is expected.

    from visiontasks.export.onnx_predictor import load_onnx
    model = load_onnx("default_int8.onnx")          # an nn.Module: model([image]) -> [{"boxes", ...}]
    evaluate_detection(model, dataset)               # scored exactly as the PyTorch model

The wrappers speak the model's own calling convention, so the one scoring path
(:func:`visiontasks.engine.evaluate.evaluate_detection` / ``evaluate_segmentation``) and
``tools/eval.py det --onnx FILE`` score an export as they score a checkpoint. The ``.json`` written
beside the file by ``tools/export.py`` gives the classes and task.

Shape shorthand: image (3, H, W) float in [0, 1]; boxes (N, 4) xyxy in its pixels; logits (B, C, H, W).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from visiontasks.errors import InputError

__all__ = ["OnnxDetector", "OnnxSegmenter", "OnnxPredictor", "load_onnx", "load_onnx_predictor", "ort_session",
           "read_meta"]


def ort_session(path: str | os.PathLike, threads: int = 2, spin: bool = True):
    """An onnxruntime CPU session with ``threads`` intra-op threads (one inter-op thread).

    ``spin=False`` stops its threads busy-waiting after each run (onnxruntime spins by default),
    so that a benchmark interleaving it with PyTorch calls does not slow those down.

    Raises:
        InputError: the file is missing or onnxruntime cannot load it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such ONNX file")
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError(path, f"running ONNX needs the 'export' extra: pip install -e \".[export]\" ({exc})") from None
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file
        raise InputError(path, f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:200]}") from None


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``.json`` that ``tools/export.py`` writes beside an .onnx (``{}`` when absent)."""
    meta = Path(path).with_suffix(".json")
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(meta, f"not readable as JSON ({exc})") from None


class OnnxDetector(nn.Module):
    """An exported detector as a visiontasks detector: ``model(images[, proposals]) -> list[dict]``.

    Args:
        path: the .onnx file (inputs ``image`` and, for Fast R-CNN, ``proposals``).
        threads: onnxruntime intra-op threads.
        classes: class names (background excluded); default from the ``.json`` beside the file.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 2, classes: list[str] | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(path, threads, spin)
        meta = read_meta(path)
        if meta.get("task", "detection") != "detection":
            raise InputError(path, f"is a {meta['task']} export; score it with 'eval.py seg'")
        self.classes = list(classes or meta.get("classes", []))
        names = [i.name for i in self.session.get_inputs()]
        if "image" not in names:
            raise InputError(path, f"has inputs {names}, not a detector's 'image'")
        self.needs_proposals = "proposals" in names
        self.proposal_params = meta.get("proposal_params", {})

    def forward(self, images: list[torch.Tensor], proposals: list[torch.Tensor] | None = None) -> list[dict]:
        """Detects in each (3, H, W) image; returns ``{"boxes", "scores", "labels"}`` per image."""
        if self.needs_proposals and proposals is None:
            raise InputError(self.path, "takes proposals: give their folder (--proposals, tools/propose.py)")
        out = []
        for k, image in enumerate(images):
            feeds = {"image": image.detach().float().cpu().numpy()}
            if self.needs_proposals:
                feeds["proposals"] = proposals[k].detach().float().cpu().numpy()
            boxes, scores, labels = self.session.run(None, feeds)
            out.append({"boxes": torch.from_numpy(np.asarray(boxes, np.float32)),
                        "scores": torch.from_numpy(np.asarray(scores, np.float32)),
                        "labels": torch.from_numpy(np.asarray(labels, np.int64))})
        return out


class OnnxSegmenter(nn.Module):
    """An exported segmenter as a visiontasks segmenter: ``model(x)["out"]`` logits (B, C, H, W).

    Exported segmenters take one fixed size (``meta["input_size"]``); onnxruntime refuses others.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 2, classes: list[str] | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(path, threads, spin)
        meta = read_meta(path)
        self.classes = list(classes or meta.get("classes", []))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Segments a (B, 3, H, W) batch at the exported size."""
        logits, _ = self.session.run(None, {"images": images.detach().float().cpu().numpy()})
        return {"out": torch.from_numpy(np.asarray(logits, np.float32))}


@dataclass
class OnnxPredictor:
    """What ``tools/eval.py --onnx`` needs of a loaded model, as ``load_model`` gives for a checkpoint."""

    model: nn.Module
    task: str
    classes: list[str]
    precision: str


def load_onnx_predictor(path: str | os.PathLike, threads: int = 2) -> OnnxPredictor:
    """The exported file as an :class:`OnnxPredictor` (task and classes from its ``.json``).

    Raises:
        InputError: the file is missing, unreadable, or has no ``.json`` naming its classes.
    """
    model = load_onnx(path, threads)
    meta = read_meta(path)
    if not model.classes:
        raise InputError(Path(path).with_suffix(".json"), "missing or names no classes (tools/export.py writes it)")
    task = "segmentation" if isinstance(model, OnnxSegmenter) else "detection"
    return OnnxPredictor(model, task, model.classes, meta.get("precision", "fp32"))


def load_onnx(path: str | os.PathLike, threads: int = 2, spin: bool = True) -> OnnxDetector | OnnxSegmenter:
    """An :class:`OnnxDetector` or :class:`OnnxSegmenter` for the file, by its inputs."""
    session = ort_session(path, threads)
    names = [i.name for i in session.get_inputs()]
    del session
    return (OnnxSegmenter if "images" in names else OnnxDetector)(path, threads, spin=spin)
