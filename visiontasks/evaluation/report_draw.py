"""The pictures of an evaluation report: bar charts and heatmaps (matplotlib, Agg) and boxes drawn on crops.

Boxes are drawn with the predictions' own drawing code (:mod:`visiontasks.results`: VOC palette
colours, label font and sizes); ground truth in white, labelled ``gt <name>``.

Shape shorthand: K = classes of a confusion matrix (with background); H, W = an image's size.
"""
from __future__ import annotations

import base64
import inspect
import io
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torchvision.utils import draw_bounding_boxes

__all__ = ["data_uri", "png_bytes", "error_bars", "confusion_heatmap", "draw_crop", "side_by_side"]

GT_COLOR = (255, 255, 255)
_FILL_LABELS = "fill_labels" in inspect.signature(draw_bounding_boxes).parameters  # as visiontasks.results
THUMB = 256  # px: the longer side of a gallery picture


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` for an ``<img src>``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def error_bars(main: Mapping[str, float], special: Mapping[str, float]) -> bytes:
    """TIDE's main and special errors as horizontal bars, in AP points (percent) gained when fixed."""
    fig = _figure(7.5, 3.0)
    for k, (title, values) in enumerate((("main errors (dAP)", main), ("special errors (dAP)", special))):
        axes = fig.add_subplot(1, 2, k + 1)
        names = list(values)[::-1]
        figures = [100 * float(values[n] or 0.0) for n in names]
        bars = axes.barh(names, figures, color=[f"C{(len(names) - 1 - i) % 10}" for i in range(len(names))])
        axes.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        axes.set_title(title, fontsize=10)
        axes.set_xlim(0, max(figures + [1.0]) * 1.25)
        axes.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def confusion_heatmap(matrix: np.ndarray, names: Sequence[str], title: str, normalise: bool = False) -> bytes:
    """A (K, K) confusion matrix (rows true, columns predicted) as a heatmap with its figures written in.

    Args:
        matrix: (K, K) counts.
        names: the K row/column names.
        title: the plot's title.
        normalise: divide each row by its sum (rows without pixels stay 0) and show fractions.
    """
    counts = np.asarray(matrix, np.float64)
    shown = counts / np.maximum(counts.sum(1, keepdims=True), 1) if normalise else counts
    k = len(names)
    side = min(max(4.0, 0.45 * k + 2), 14.0)
    fig = _figure(side + 1, side)
    axes = fig.add_subplot(1, 1, 1)
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else max(shown.max(), 1))
    fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(k), [n[:12] for n in names], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(k), [n[:12] for n in names], fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    if k <= 25:
        top = shown.max() if shown.size else 1
        for (i, j), v in np.ndenumerate(shown):
            if v:
                axes.text(j, i, f"{v:.2f}" if normalise else f"{int(v)}", ha="center", va="center", fontsize=7,
                          color="white" if v > 0.6 * top else "black")
    fig.tight_layout()
    return png_bytes(fig)


def _encode(picture: np.ndarray) -> bytes:
    image = Image.fromarray(picture)
    if max(image.size) > THUMB:
        scale = THUMB / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=82)
    return buf.getvalue()


def draw_crop(image: Image.Image, det: Sequence[float] | None, det_label: int, det_score: float,
              gts: Sequence[Sequence[float]], gt_labels: Sequence[int], classes: Sequence[str],
              context: float = 0.5, min_side: int = 96) -> bytes:
    """The region around a detection (or a missed box) with the boxes drawn, as JPEG bytes.

    Args:
        image: the whole image (RGB).
        det: the detection's ``xyxy`` 0-based box, or None (a missed object: only ground truth drawn).
        det_label, det_score: its class (1..C) and score.
        gts: ``xyxy`` ground-truth boxes to draw in white (the one it points at, the one missed).
        gt_labels: their classes (1..C).
        classes: the C class names.
        context: margin around the boxes, as a fraction of their extent on each side.
        min_side: the crop's smallest side in px (when the image is that large).

    Returns:
        The crop, its longer side at most ``THUMB`` px, as JPEG.
    """
    import torch

    from visiontasks.results import DetectionResult, label_style

    boxes = np.array(([det] if det is not None else []) + [list(g) for g in gts], np.float64).reshape(-1, 4)
    w, h = image.size
    x0, y0 = boxes[:, :2].min(0)
    x1, y1 = boxes[:, 2:].max(0)
    mx, my = max((x1 - x0) * context, (min_side - (x1 - x0)) / 2), max((y1 - y0) * context, (min_side - (y1 - y0)) / 2)
    left, top = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    right, bottom = int(min(w, np.ceil(x1 + mx + 1))), int(min(h, np.ceil(y1 + my + 1)))
    region = image.crop((left, top, right, bottom)).convert("RGB")
    zoom = max(1, int(np.ceil(THUMB * 0.75 / max(region.size))))  # small crops enlarged so that labels read
    region = region.resize((region.width * zoom, region.height * zoom), Image.NEAREST) if zoom > 1 else region
    crop = torch.from_numpy(np.asarray(region).copy()).permute(2, 0, 1)

    def placed(b: Sequence[Sequence[float]]) -> torch.Tensor:
        return (torch.tensor(np.asarray(b, np.float32).reshape(-1, 4)) - torch.tensor([left, top] * 2)) * zoom

    if len(gts):
        style = label_style(crop.shape[-2], crop.shape[-1])
        filled = {"fill_labels": True, "label_colors": [(0, 0, 0)] * len(gts),
                  "label_background_colors": [GT_COLOR] * len(gts)} if _FILL_LABELS else {}
        crop = draw_bounding_boxes(crop, placed(gts), labels=[f"gt {classes[int(c) - 1]}" for c in gt_labels],
                                   colors=GT_COLOR, width=style["width"], font=style["font"],
                                   font_size=style["font_size"], **filled)
    if det is not None:
        found = DetectionResult(placed([det]), torch.tensor([float(det_score)]), torch.tensor([int(det_label)]),
                                classes)
        return _encode(found.draw(image=crop))
    return _encode(crop.permute(1, 2, 0).numpy())


def side_by_side(image: np.ndarray | None, gt: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> bytes:
    """Image | ground truth | prediction for segmentation, the label maps overlaid in VOC colours, as JPEG.

    Args:
        image: (H, W, 3) uint8 RGB or None (the label maps then drawn on grey).
        gt, pred: (H, W) label maps (255 in ``gt``: void, drawn as background).
        names: the class names, background first.
    """
    import torch

    from visiontasks.results import SegmentationResult

    base = image if image is not None else np.full((*gt.shape, 3), 128, np.uint8)
    tensor = torch.from_numpy(np.array(base, np.uint8)).permute(2, 0, 1)
    panels = [base]
    for labels in (np.where(gt == 255, 0, gt), pred):
        panels.append(SegmentationResult(torch.from_numpy(labels.astype(np.int64)), names).draw(image=tensor))
    gap = np.full((base.shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    image_out = Image.fromarray(row)
    scale = min(1.0, 3 * THUMB / image_out.width)
    if scale < 1:
        image_out = image_out.resize((round(image_out.width * scale), max(1, round(image_out.height * scale))),
                                     Image.BILINEAR)
    buf = io.BytesIO()
    image_out.save(buf, format="JPEG", quality=82)
    return buf.getvalue()
