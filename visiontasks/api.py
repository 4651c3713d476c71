"""The inference API: ``load_model(...)`` → ``Predictor``; ``predictor.predict(image)`` → results.

Example::

    import visiontasks
    model = visiontasks.load_model("default")            # embedded weights, no download
    result = model.predict("street.jpg")                 # path, PIL, HWC uint8 array or CHW tensor
    result.boxes, result.scores, result.label_names
    result.save("street_pred.png")

``load_model`` accepts ``"default"`` (the shipped ``weights/default_det.pt``), ``"default-seg"`` (the
shipped segmenter ``weights/default_seg.pt``: ``predict`` gives masks), a run directory
written by ``tools/train_det.py``/``train_seg.py`` (``config.yaml`` + ``checkpoint_last.pt``), a
checkpoint file (it carries its config), or a YAML config (random weights unless ``weights``).
Checkpoints are read with ``torch.load(weights_only=True)``: a hostile file cannot run code.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from visiontasks.config import DEFAULTS, apply_overrides, load_config, merge, upgrade_renamed, validate
from visiontasks.conv_select import inference_layout
from visiontasks.device import check_device
from visiontasks.errors import InputError
from visiontasks.precision import (autocast, autocast_forward, cast_dense_weights, fp32_boundaries,
                                   resolve_precision)
from visiontasks.registry import get_model
from visiontasks.results import DetectionResult, SegmentationResult

__all__ = ["load_model", "load_for_task", "Predictor", "PRESETS", "DEFAULT_WEIGHTS", "DEFAULT_SEG_WEIGHTS", "SHIPPED_MODELS",
           "to_tensor_image"]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

#: Score thresholds of the presets, as chainercv's ``use_preset``.
PRESETS = {"visualize": 0.7, "evaluate": 0.05}

# Proposals computed inside predict() take turns: OpenCV's selective search presets reseed and draw
# from the C library's process-global rand(), so two threads at once would rank each other's boxes.
_PROPOSE_LOCK = threading.Lock()


def _default_weights(name: str = "default_det.pt") -> Path:
    """A shipped checkpoint (default: the detector): an installed wheel's copy (``visiontasks/_weights``,
    see setup.py) or, in a checkout, the top-level ``weights/`` folder (the source of truth)."""
    here = Path(__file__).resolve().parent
    installed = here / "_weights" / name
    return installed if installed.is_file() else here.parent / "weights" / name


#: The checkpoint ``load_model("default")`` reads (trained by tools/train_det.py, see weights/README.md).
DEFAULT_WEIGHTS = _default_weights()
#: The checkpoint ``load_model("default-seg")`` reads (trained by tools/train_seg.py, see weights/README.md).
DEFAULT_SEG_WEIGHTS = _default_weights("default_seg.pt")
#: The names ``load_model`` resolves to shipped checkpoints.
SHIPPED_MODELS = {"default": DEFAULT_WEIGHTS, "default-seg": DEFAULT_SEG_WEIGHTS}


def to_tensor_image(image: ImageLike, name: str = "image") -> torch.Tensor:
    """Converts a path, PIL image, HWC uint8 RGB array or CHW tensor to a float (3, H, W) tensor in [0, 1].

    Args:
        image: the input, as :meth:`Predictor.predict` accepts it.
        name: what to call a non-file input in an error (e.g. ``"images[2]"``); a file is named by its path.

    Returns:
        The (3, H, W) float32 tensor, H and W at least 1.

    Raises:
        InputError: an image with no pixels (zero height or width), e.g. ``np.zeros((0, 0, 3), np.uint8)``.
        ValueError / TypeError: an ambiguous or unsupported array (one line, see docs/RELIABILITY.md).
    """
    if isinstance(image, (str, os.PathLike)):
        from visiontasks.data import read_image  # decoding and its InputErrors live in one place

        return _unit_float(_nonempty(read_image(image), str(image)))
    return _nonempty(_array_to_tensor(image, name), name)


def _nonempty(image: torch.Tensor, name: str) -> torch.Tensor:
    """``image`` (C, H, W) unchanged, or one InputError line when it has no pixels."""
    h, w = image.shape[-2:]
    if h == 0 or w == 0:
        raise InputError(name, f"empty image ({h}x{w} pixels, height x width): nothing to predict on")
    return image


def _unit_float(chw: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) uint8 tensor, any strides, as a new contiguous float32 tensor in [0, 1], in one pass.

    The cast, the division by 255 and any transpose are one kernel (values equal ``x.float() / 255``),
    and the model's normalisation and resizing then run on the contiguous layout an image file
    gives (a permuted HWC array made them run strided: issue 24, ``bench/predict_overhead.py``).
    """
    return torch.div(chw, 255.0, out=torch.empty(chw.shape, dtype=torch.float32, device=chw.device))


def _hwc_to_chw_float(image: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 array as a contiguous (3, H, W) float32 tensor in [0, 1] (never aliasing it).

    The array is viewed, not copied, except where ``torch.from_numpy`` cannot view it (read-only,
    e.g. ``np.asarray(pil_image)``, or negative strides).
    """
    if not image.flags.writeable or any(s < 0 for s in image.strides):
        image = np.array(image, copy=True)
    return _unit_float(torch.from_numpy(image).permute(2, 0, 1))


def _array_to_tensor(image: Image.Image | np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"a numpy image must be HWC RGB, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"a numpy image must be uint8, got {image.dtype}")
        return _hwc_to_chw_float(image)
    if torch.is_tensor(image):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be CHW with 3 channels, got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            return _unit_float(image)
        if not image.is_floating_point():
            raise ValueError(f"a tensor image must be uint8 (0..255) or float (0..1), got {image.dtype}")
        _nonempty(image, name)  # aminmax has no identity on an empty tensor
        lo, hi = (float(v) for v in torch.aminmax(image.detach().float()))
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(f"a float tensor image must hold values in [0, 1], got min {lo:g} max {hi:g}; "
                             "for 0..255 pass a uint8 tensor or divide by 255")
        return image.float()
    raise TypeError(f"unsupported image type {type(image).__name__}")


class Predictor:
    """A model ready for inference: eval mode, on its device, with class names and a preset.

    Args:
        model: a detector or segmenter following docs/CONTRACTS.md.
        task: "detection" or "segmentation".
        classes: object class names (background excluded).
        device: where to run.
        preset: "visualize" (score ≥ 0.7) or "evaluate" (score ≥ 0.05); detection only. The
            preset sets the detector's own score threshold (``model.score_thresh``): one
            threshold, applied once, as chainercv's ``use_preset``.
        precision: "fp32" or "bf16" (see :func:`load_model`; in bf16 the conv/linear weights are
            stored in bf16 and ``self.model`` runs itself under autocast). Models with 2-D
            convolutions run channels-last — fp32 VGG16 models NCHW, their 3×3 convolutions by
            NNPACK's Winograd kernel (``visiontasks/winograd_conv.py``) — and ``predict`` runs
            under ``torch.inference_mode``.

    Threads: ``predict`` may be called from several threads on one Predictor at once (a web
    server's pool); each call gets what a sequential call gets (tests/test_api_threads.py,
    docs/RELIABILITY.md). Change the preset or ``score_thresh`` only while no call is running:
    it is the model's one threshold (use one Predictor per preset instead).
    """

    def __init__(self, model: nn.Module, task: str, classes: Sequence[str], device: str | torch.device = "cpu",
                 preset: str = "visualize", config: dict | None = None, precision: str = "fp32") -> None:
        check_device(device, "device")
        self.model = model.to(device).eval()
        self.task = task
        self.classes = tuple(classes)
        self.device = torch.device(device)
        self.config = config or {}
        self.use_preset(preset)
        self.precision = precision
        self._dtype = resolve_precision(precision, self.device)
        if self._dtype is not None:
            fp32_boundaries(self.model)  # decoding, NMS and the outputs stay float32
            cast_dense_weights(self.model, self._dtype)  # not cast again on every call
            autocast_forward(self.model, self.device, self._dtype)  # every caller of self.model gets bf16
        inference_layout(self.model, self.device)  # channels-last or, fp32 VGG16, NCHW + Winograd

    def use_preset(self, preset: str) -> None:
        """Selects the score threshold: "visualize" (0.7) or "evaluate" (0.05)."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.preset = preset
        self.score_thresh = PRESETS[preset]

    @property
    def score_thresh(self) -> float | None:
        """The detector's score threshold (None for segmenters)."""
        return getattr(self.model, "score_thresh", None) if self.task == "detection" else None

    @score_thresh.setter
    def score_thresh(self, value: float) -> None:
        if self.task == "detection":
            self.model.score_thresh = float(value)

    @torch.inference_mode()
    def predict(self, images: ImageLike | list[ImageLike],
                proposals: torch.Tensor | list[torch.Tensor] | None = None) -> Any:
        """Runs the model on one image or a list; returns one result or a list of results.

        Args:
            images: a path, PIL image, HWC uint8 array or CHW tensor, or a list of them.
            proposals: for detectors fed precomputed proposals (Fast R-CNN, SPP-net, R-CNN): an
                (R, 4) xyxy tensor per image in its pixels; by default they are computed with the
                method the model names (``model.proposal_params``, e.g. selective search).
        """
        single = not isinstance(images, list)
        named = [("image", images)] if single else [(f"images[{i}]", im) for i, im in enumerate(images)]
        tensors = [to_tensor_image(im, name) for name, im in named]
        batch = [t.to(self.device) for t in tensors]
        if self.task == "detection":
            kwargs = {}
            if proposals is not None:
                props = [proposals] if single and torch.is_tensor(proposals) else list(proposals)
                kwargs["proposals"] = [torch.as_tensor(p, dtype=torch.float32).to(self.device) for p in props]
            elif getattr(self.model, "needs_proposals", False):
                with _PROPOSE_LOCK:
                    kwargs["proposals"] = [self.model.propose(t).to(self.device) for t in tensors]
            with autocast(self.device, self._dtype):
                outputs = self.model(batch, **kwargs)
            results = [DetectionResult(boxes=out["boxes"].cpu(), scores=out["scores"].cpu(),
                                       labels=out["labels"].cpu(), classes=self.classes, image=img)
                       for out, img in zip(outputs, tensors)]
        else:
            names = ("background", *self.classes)
            with autocast(self.device, self._dtype):
                masks = [self.model(b[None])["out"][0].argmax(0).cpu() for b in batch]
            results = [SegmentationResult(mask=mask, class_names=names, image=img) for mask, img in zip(masks, tensors)]
        return results[0] if single else results


def _checkpoint_state(path: Path) -> dict:
    from visiontasks.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _classes_of(cfg: dict, meta: dict) -> list[str]:
    if meta.get("classes"):
        return list(meta["classes"])
    from visiontasks.data import dataset_classes

    return list(dataset_classes(cfg["data"]))


def load_model(source: str | os.PathLike = "default", weights: str | os.PathLike | None = None,
               device: str | torch.device = "cpu", preset: str = "visualize",
               overrides: Sequence[str] = (), precision: str = "fp32") -> Predictor:
    """Builds a model from a config, a run directory or a checkpoint, ready to ``predict``.

    Args:
        source: "default" (the shipped detector), "default-seg" (the shipped segmenter), a run
            directory, a checkpoint ``.pt`` file, or a YAML config.
        weights: a checkpoint whose model weights replace the source's.
        device: "cpu", "cuda", ...
        preset: score preset for detection ("visualize" or "evaluate").
        overrides: ``key.sub=value`` config overrides (e.g. ``model.test.score_thresh=0.01``).
        precision: "fp32" (exact) or "bf16" (autocast around the network; decoding, NMS and the
            outputs stay float32; fp32 with one warning line on a CPU without native bf16).

    Returns:
        A :class:`Predictor`.
    """
    path = SHIPPED_MODELS.get(str(source)) or Path(source)
    cfg: dict | None = None
    state: dict | None = None
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise InputError(path, "not a run directory (no config.yaml)")
        cfg = load_config(path / "config.yaml", overrides, upgrade=True)
        ckpt = path / "checkpoint_last.pt"
        if weights is None:
            if not ckpt.is_file():
                raise InputError(ckpt, "the run directory has no checkpoint yet (pass weights=... to use another)")
            state = _checkpoint_state(ckpt)
    elif path.suffix in (".yaml", ".yml"):
        cfg = load_config(path, overrides)
    elif path.is_file():
        state = _checkpoint_state(path)
        if not isinstance(state.get("config"), dict):
            raise InputError(path, "checkpoint carries no config; pass the run's config.yaml as source")
        cfg = validate(merge(DEFAULTS, upgrade_renamed(state["config"])), str(path))
        if overrides:
            cfg = validate(apply_overrides(cfg, overrides), str(path))
    else:
        raise InputError(path, "no such file or directory (expected 'default', a run dir, a .pt or a .yaml)")
    if weights is not None:
        state = _checkpoint_state(Path(weights))
    model_cfg = dict(cfg["model"])
    model_cfg.pop("pretrained_backbone", None)  # weights come from the checkpoint, never a download
    model = get_model(model_cfg.pop("name"), **model_cfg)
    meta: dict = {}
    if state is not None:
        meta = state.get("meta") or {}
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise InputError(weights or path, f"weights do not fit the model: {exc}".split("\n")[0]) from None
    return Predictor(model, cfg["task"], _classes_of(cfg, meta), device=device, preset=preset, config=cfg,
                     precision=precision)


def load_for_task(task: str, checkpoint: str | os.PathLike | None = None, onnx: str | os.PathLike | None = None,
                  device: str = "cpu", precision: str = "fp32") -> Any:
    """A predictor for scoring: a checkpoint (``load_model`` with the ``evaluate`` preset) or an ONNX export
    (float or int8, run with onnxruntime), refused in one line when it does the other task.

    Args:
        task: ``"detection"`` or ``"segmentation"``: what the caller scores.
        checkpoint: a checkpoint, run directory or shipped name.
        onnx: an exported ``.onnx`` file instead (``tools/export.py``).
        device, precision: as :func:`load_model` (checkpoints only).

    Returns:
        A :class:`Predictor`, or the ONNX predictor (same ``model`` / ``task`` / ``classes``).

    Raises:
        ValueError: both or neither of ``checkpoint`` and ``onnx``.
        InputError: the file holds a model of the other task.
    """
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give --checkpoint or --onnx, not both" if onnx else "give --checkpoint or --onnx")
    if onnx is not None:
        from visiontasks.export.onnx_predictor import load_onnx_predictor

        predictor, source, kind = load_onnx_predictor(onnx), onnx, "export"
    else:
        predictor, source, kind = load_model(checkpoint, device=device, preset="evaluate", precision=precision), \
            checkpoint, "checkpoint"
    if predictor.task != task:
        tool = "det" if predictor.task == "detection" else "seg"
        raise InputError(source, f"is a {predictor.task} {kind}, but this scores {task}; use 'eval.py {tool}'")
    return predictor

