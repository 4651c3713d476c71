"""ONNX export of any registered detector or segmenter, checked against onnxruntime before it is kept.

``export_onnx`` traces the export wrapper (``torch.onnx.export(dynamo=False)``, as torchvision
exports its detectors), writes the file atomically, then runs it with onnxruntime on several
images — the example, another size and orientation (detectors; segmenters are exported for one
size, and onnxruntime refuses others), and a featureless ramp that usually gives no detections —
and compares with the PyTorch model itself. Any difference beyond :data:`TOLERANCE` removes the
file and raises :class:`ExportError`: a graph that froze a size or a branch is refused, never written.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from visiontasks.export.detectors import ExportError, detector_for_export
from visiontasks.export.segmenters import SegmenterForExport

__all__ = ["TOLERANCE", "OPSET", "ExportReport", "export_onnx", "check_onnx", "box_tolerance"]

OPSET = 17
#: Largest allowed differences between onnxruntime and PyTorch: boxes (1e-2 px, or 1e-4 of the
#: image's longer side if larger: float32 rounding through a deep backbone grows with the
#: coordinates), scores, segmentation logits (relative to the largest logit, at least 1) and the
#: share of mask pixels that may differ.
TOLERANCE = {"boxes_px": 1e-2, "boxes_rel": 1e-4, "scores": 1e-4, "logits": 1e-3, "mask_mismatch": 1e-3}


def box_tolerance(height: int, width: int) -> float:
    """The allowed box difference in pixels for an image of this size (see :data:`TOLERANCE`)."""
    return max(TOLERANCE["boxes_px"], TOLERANCE["boxes_rel"] * max(height, width))


@dataclass
class ExportReport:
    """What was exported and how it compared: one line per checked input."""

    path: Path
    task: str
    inputs: list[str]
    outputs: list[str]
    checks: list[str] = field(default_factory=list)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the 'export' extra: pip install -e \".[export]\" ({exc})") from None


def _sample_images(task: str, size: Sequence[int]) -> list[tuple[str, torch.Tensor]]:
    c, h, w = size
    g = torch.Generator().manual_seed(0)
    ramp = (torch.linspace(0.3, 0.5, w)[None, :] + torch.linspace(0.0, 0.2, h)[:, None]).expand(c, h, w).clone()
    images = [(f"random {h}x{w}", torch.rand(c, h, w, generator=g))]
    if task == "detection":  # dynamic size: another size, the other orientation
        other = (c, max(16, (w * 5) // 4), max(16, (h * 3) // 4))
        images.append((f"random {other[1]}x{other[2]}", torch.rand(other, generator=g)))
    else:  # fixed size: another image
        images.append((f"random {h}x{w} (2)", torch.rand(c, h, w, generator=g)))
    # smooth and featureless (a uniform image would tie every score)
    images.append((f"plain ramp {h}x{w}", ramp))
    return images


def _ort_session(path: Path):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = max(1, min(2, torch.get_num_threads()))
    return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _run(session, feeds: dict[str, np.ndarray], desc: str) -> list[np.ndarray]:
    try:
        return session.run(None, feeds)
    except Exception as exc:  # e.g. a graph built for another size indexing out of bounds
        raise ExportError(f"{desc}: onnxruntime cannot run the graph: {str(exc).strip()[:300]}") from None


def _match_detections(ref: dict, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, desc: str,
                      box_tol: float) -> tuple[float, float, int]:
    """Pairs each PyTorch detection with an unused onnxruntime one of the same label within the
    tolerance (exactly tied scores may come out in another order).

    Detections left unpaired on either side are accepted only at the cut-off — scores within
    ``10 × TOLERANCE["scores"]`` of the lowest score kept by both, where rounding decides what
    the top-N and the threshold keep. Returns the largest box and score differences and the
    number of such borderline detections.
    """
    rb, rs, rl = ref["boxes"].numpy(), ref["scores"].numpy(), ref["labels"].numpy()
    free = np.ones(len(scores), bool)
    cutoff = min([*rs.tolist(), *scores.tolist()] or [0.0]) + 10 * TOLERANCE["scores"]
    db = ds = 0.0
    unmatched = 0
    for i in range(len(rs)):
        box_err = np.abs(boxes - rb[i]).max(axis=1) if len(boxes) else np.zeros(0)
        score_err = np.abs(scores - rs[i])
        ok = free & (labels == rl[i]) & (box_err <= box_tol) & (score_err <= TOLERANCE["scores"])
        if not ok.any():
            if rs[i] <= cutoff:
                unmatched += 1
                continue
            raise ExportError(f"{desc}: PyTorch's detection {i} (label {int(rl[i])}, score {rs[i]:.4f}, box "
                              f"{np.round(rb[i], 1).tolist()}) has no match in onnxruntime's output within "
                              f"{box_tol:.3g} px / {TOLERANCE['scores']} score")
        j = int(np.flatnonzero(ok)[np.argmin(score_err[ok])])
        free[j] = False
        db, ds = max(db, float(box_err[j])), max(ds, float(score_err[j]))
    extra = scores[free]
    if (extra > cutoff).any():
        raise ExportError(f"{desc}: onnxruntime gives {int((extra > cutoff).sum())} detection(s) PyTorch does not "
                          f"(best score {float(extra.max()):.4f})")
    return db, ds, unmatched + int(free.sum())


def check_onnx(path: str | os.PathLike, model: nn.Module, task: str,
               images: Sequence[tuple[str, torch.Tensor]], num_proposals: int = 0) -> list[str]:
    """Runs the exported file and the PyTorch model on the same images and compares them.

    Args:
        path: the .onnx file.
        model: the PyTorch model it came from (eval mode).
        task: "detection" or "segmentation".
        images: (description, (3, H, W) image in [0, 1]) pairs.
        num_proposals: for detectors fed proposals, boxes per image (fixed, seeded).

    Returns:
        One line per image saying what matched (e.g. ``"random 64x80: 12 detections, max |Δbox| 2e-05 px"``).

    Raises:
        ExportError: on any difference beyond :data:`TOLERANCE` (the message says which output).
    """
    from visiontasks.summary import fixed_proposals

    session = _ort_session(Path(path))
    device = _device_of(model)
    lines = []
    for desc, image in images:
        with torch.no_grad():
            if task == "segmentation":
                ref = model(image[None].to(device))["out"].float().cpu()
                logits, mask = _run(session, {"images": image[None].numpy()}, desc)
                if logits.shape != tuple(ref.shape):
                    raise ExportError(f"{desc}: onnxruntime gives logits {logits.shape}, PyTorch {tuple(ref.shape)}")
                err = float(np.abs(logits - ref.numpy()).max()) if ref.numel() else 0.0
                bound = TOLERANCE["logits"] * max(1.0, float(ref.abs().max()))
                mismatch = float((mask != ref.argmax(1).numpy()).mean())
                if err > bound or mismatch > TOLERANCE["mask_mismatch"]:
                    raise ExportError(f"{desc}: onnxruntime differs from PyTorch: logits max |Δ| {err:.3g} "
                                      f"(allowed {bound:.3g}), {mismatch:.2%} of mask pixels")
                lines.append(f"{desc}: logits max |Δ| {err:.2g}, mask pixels differing {mismatch:.3%}")
                continue
            feeds = {"image": image.numpy()}
            kwargs = {}
            if num_proposals:
                props = fixed_proposals(image.shape[1], image.shape[2], num_proposals)
                feeds["proposals"] = props.numpy()
                kwargs["proposals"] = [props.to(device)]
            ref = {k: v.cpu() for k, v in model([image.to(device)], **kwargs)[0].items()}
            boxes, scores, labels = _run(session, feeds, desc)
            n_ref = len(ref["scores"])
            db, ds, borderline = _match_detections(ref, boxes, scores, labels, desc,
                                                   box_tolerance(image.shape[1], image.shape[2]))
            lines.append(f"{desc}: {n_ref} detections (onnxruntime {len(scores)}), max |Δbox| {db:.2g} px, "
                         f"max |Δscore| {ds:.2g}" + (f", {borderline} at the score cut-off" if borderline else ""))
    return lines


def export_onnx(model: nn.Module, task: str, out: str | os.PathLike, name: str = "",
                image_size: Sequence[int] = (3, 224, 288), num_proposals: int = 300,
                check: bool = True, check_images: Sequence[tuple[str, torch.Tensor]] = ()) -> ExportReport:
    """Exports a detector or segmenter to ONNX and checks it against onnxruntime.

    Args:
        model: a visiontasks detector (``task="detection"``) or segmenter, with its weights.
        task: "detection" or "segmentation".
        out: the .onnx file to write (replaced atomically, only after the check passes).
        name: the model's name for messages.
        image_size: (3, H, W) of the example image traced. Detectors keep height and width
            dynamic; segmenters are exported for this size only (the batch stays dynamic).
        num_proposals: proposals per image used to trace and check detectors fed proposals.
        check: compare with onnxruntime (on by default; off only to inspect a failing graph).
        check_images: more (description, (3, H, W) image in [0, 1]) pairs to compare on, e.g. real
            photographs on which a trained detector finds objects.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: the model cannot be exported (names the part), or the graph differs from it.
    """
    _require_onnx()
    if task not in ("detection", "segmentation"):
        raise ExportError(f"{name or type(model).__name__}: ONNX export covers detectors and segmenters, not {task!r}")
    model = model.eval()
    label = name or type(model).__name__
    proposals = bool(getattr(model, "needs_proposals", False))
    size = tuple(int(v) for v in image_size)
    example = torch.rand(size, generator=torch.Generator().manual_seed(1)).to(_device_of(model))
    if task == "detection":
        wrapper = detector_for_export(model, label)
        names_in = ["image", "proposals"] if proposals else ["image"]
        names_out = ["boxes", "scores", "labels"]
        axes = {"image": {1: "height", 2: "width"}, **{k: {0: "detections"} for k in names_out}}
        if proposals:
            from visiontasks.summary import fixed_proposals

            args: tuple = (example, fixed_proposals(size[1], size[2], num_proposals).to(example.device))
            axes["proposals"] = {0: "proposals"}
        else:
            args = (example,)
    else:
        wrapper = SegmenterForExport(model)
        names_in, names_out = ["images"], ["logits", "mask"]
        # Fixed height and width: the segmenters pad and crop with sizes computed in Python, which
        # a trace freezes; onnxruntime then refuses any other size (it never gives a wrong mask).
        axes = {"images": {0: "batch"}, "logits": {0: "batch"}, "mask": {0: "batch"}}
        args = (example[None],)
    wrapper.eval()  # the exporter restores the wrapper's mode afterwards, and with it the model's
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings: the check below is what decides
            try:
                torch.onnx.export(wrapper, args, tmp, dynamo=False, opset_version=OPSET, input_names=names_in,
                                  output_names=names_out, dynamic_axes=axes, do_constant_folding=True)
            except Exception as exc:  # the exporter's own errors name the unsupported operator
                first = str(exc).strip().split("\n")[0].split(" [Caused by")[0]
                raise ExportError(f"{label}: cannot export to ONNX: {first}") from None
        report = ExportReport(out, task, names_in, names_out)
        if check:
            try:
                report.checks = check_onnx(tmp, model, task, [*_sample_images(task, size), *check_images],
                                           num_proposals if proposals else 0)
            except ExportError as exc:
                raise ExportError(f"{label}: the exported graph does not reproduce the model, not written: {exc}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give it a normal file's mode
        os.replace(tmp, out)
        return report
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
