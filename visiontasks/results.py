"""What ``Predictor.predict`` returns: boxes or masks, drawable and savable.

Shape shorthand: N detections, H×W the input image's size.

``DetectionResult``: ``boxes`` (N, 4) float32 xyxy pixels (0-based) in the input image,
``scores`` (N,) descending, ``labels`` (N,) int64 in 1..C, ``label_names`` list of N names.
``SegmentationResult``: ``mask`` (H, W) int64 class indices (0 = background), ``class_names``
(background first).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
from visiontasks.io import atomic_write

__all__ = ["DetectionResult", "SegmentationResult", "draw_legend", "label_style", "save_png"]

_FILL_LABELS = "fill_labels" in inspect.signature(draw_bounding_boxes).parameters  # torchvision >= 0.21
MIN_FONT_SIZE = 10  # px: the floor for tiny images
FONT_FRACTION = 0.03  # label text height as a fraction of the image's shorter side


@lru_cache(maxsize=1)
def label_font() -> str | None:
    """A TrueType font file for scalable labels: matplotlib's DejaVu Sans, else PIL's search path.

    Returns:
        The font's path, or None when none is found (torchvision then uses PIL's fixed bitmap font).
    """
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return str(path)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "Arial.ttf", "LiberationSans-Regular.ttf"):
        try:
            ImageFont.truetype(name, MIN_FONT_SIZE)
            return name
        except OSError:
            continue
    return None


def label_style(height: int, width: int) -> dict[str, Any]:
    """Font, font size and box line width for an image of this size, so labels read at any size.

    Args:
        height: the image's height in pixels.
        width: the image's width in pixels.

    Returns:
        ``font`` (a TrueType path or None), ``font_size`` (px, proportional to the shorter side with
        a floor of ``MIN_FONT_SIZE``; None without a TrueType font) and ``width`` (box line, px).
    """
    short = min(height, width)
    font = label_font()
    size = max(MIN_FONT_SIZE, round(FONT_FRACTION * short))
    return {"font": font, "font_size": size if font else None, "width": max(2, round(short / 250))}


def contrasting(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``color`` (ITU-R BT.601 luma threshold)."""
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_legend(picture: np.ndarray, names: Sequence[str], colors: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Writes each name on a filled box of its colour (black or white text), stacked at the top left.

    Args:
        picture: (H, W, 3) uint8 RGB.
        names: the class names to list.
        colors: their colours.

    Returns:
        A new (H, W, 3) uint8 array; text sized by :func:`label_style`.
    """
    from PIL import ImageDraw, ImageFont

    style = label_style(*picture.shape[:2])
    font = ImageFont.truetype(style["font"], style["font_size"]) if style["font"] else ImageFont.load_default()
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    pad, y = max(1, style["font_size"] // 5), 0
    for name, color in zip(names, colors):
        left, top, right, bottom = draw.textbbox((pad, y + pad), name, font=font)
        draw.rectangle((0, y, right + pad, bottom + pad), fill=tuple(color))
        draw.text((pad, y + pad), name, fill=contrasting(color), font=font)
        y = bottom + pad + 1
    return np.asarray(canvas).copy()


def class_color(label: int) -> tuple[int, int, int]:
    """The VOC palette colour of class ``label`` (1..C; wraps past the palette's 256 entries)."""
    from visiontasks.data import voc_colormap

    cmap = voc_colormap()
    return tuple(int(v) for v in cmap[1 + (int(label) - 1) % (len(cmap) - 1)])


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Writes an HWC uint8 RGB array as PNG atomically (temp file + rename)."""
    with atomic_write(path) as f:
        Image.fromarray(image).save(f, format="PNG")
    return Path(path)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8) if image.is_floating_point() else image


@dataclass
class DetectionResult:
    """Detections for one image (see module docstring for shapes)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    classes: Sequence[str]
    image: torch.Tensor | None = field(default=None, repr=False)

    @property
    def label_names(self) -> list[str]:
        return [self.classes[int(label) - 1] for label in self.labels]

    def __len__(self) -> int:
        return len(self.boxes)

    def draw(self, image: torch.Tensor | None = None, width: int | None = None) -> np.ndarray:
        """Returns the image (HWC uint8 RGB) with boxes, names and scores drawn.

        Each class has its VOC palette colour; the label sits on a filled box of that colour in
        black or white text, sized to the image (:func:`label_style`).

        Args:
            image: (3, H, W) float in [0, 1] or uint8; defaults to the image predicted on.
            width: box line width in px; defaults to :func:`label_style`'s.

        Returns:
            An (H, W, 3) uint8 array; the image unchanged when there are no detections.
        """
        image = self.image if image is None else image
        if image is None:
            raise ValueError("no image to draw on: pass one to draw()")
        pixels = _to_uint8(image.cpu())
        if len(self.boxes) == 0:  # torchvision warns on an empty box list
            return pixels.permute(1, 2, 0).numpy()
        style = label_style(pixels.shape[-2], pixels.shape[-1])
        colors = [class_color(label) for label in self.labels.tolist()]
        names = [f"{n} {s:.2f}" for n, s in zip(self.label_names, self.scores.tolist())]
        filled = {"fill_labels": True, "label_colors": [contrasting(c) for c in colors],
                  "label_background_colors": colors} if _FILL_LABELS else {}
        drawn = draw_bounding_boxes(pixels, self.boxes.cpu().float(), labels=names, colors=colors,
                                    width=width or style["width"], font=style["font"],
                                    font_size=style["font_size"], **filled)
        return drawn.permute(1, 2, 0).numpy()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`draw`'s picture as a PNG file."""
        return save_png(self.draw(), path)

    def to_coco(self, image_id: int, label_to_cat_id: dict[int, int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries (``bbox`` as xywh) for this image."""
        out = []
        for (x0, y0, x1, y1), score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            cat = label_to_cat_id[label] if label_to_cat_id else label
            out.append({"image_id": int(image_id), "category_id": int(cat),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
        return out


@dataclass
class SegmentationResult:
    """A per-pixel class map for one image (see module docstring for shapes)."""

    mask: torch.Tensor
    class_names: Sequence[str]
    image: torch.Tensor | None = field(default=None, repr=False)

    def draw(self, image: torch.Tensor | None = None, alpha: float = 0.5) -> np.ndarray:
        """Returns the image (HWC uint8 RGB) with every non-background class overlaid in its VOC colour."""
        from visiontasks.data import voc_colormap

        image = self.image if image is None else image
        if image is None:
            raise ValueError("no image to draw on: pass one to draw()")
        cmap = voc_colormap()
        present = [int(c) for c in torch.unique(self.mask) if 0 < int(c) < len(cmap)]
        if not present:
            return _to_uint8(image.cpu()).permute(1, 2, 0).numpy()
        masks = torch.stack([self.mask.cpu() == c for c in present])
        colors = [tuple(int(v) for v in cmap[c]) for c in present]
        drawn = draw_segmentation_masks(_to_uint8(image.cpu()), masks, alpha=alpha, colors=colors)
        names = [self.class_names[c] if c < len(self.class_names) else str(c) for c in present]
        return draw_legend(drawn.permute(1, 2, 0).numpy(), names, colors)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`draw`'s overlay as a PNG file."""
        return save_png(self.draw(), path)
