"""What ``Predictor.predict`` returns: boxes or masks, drawable and savable.

Shape shorthand: N detections, H×W the input image's size.

``DetectionResult``: ``boxes`` (N, 4) float32 xyxy pixels (0-based) in the input image,
``scores`` (N,) descending, ``labels`` (N,) int64 in 1..C, ``label_names`` list of N names.
``SegmentationResult``: ``mask`` (H, W) int64 class indices (0 = background), ``class_names``
(background first).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
from visiontasks.io import atomic_write

__all__ = ["DetectionResult", "SegmentationResult", "save_png"]


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

    def draw(self, image: torch.Tensor | None = None, width: int = 2) -> np.ndarray:
        """Returns the image (HWC uint8 RGB) with boxes, names and scores drawn."""
        image = self.image if image is None else image
        if image is None:
            raise ValueError("no image to draw on: pass one to draw()")
        names = [f"{n} {s:.2f}" for n, s in zip(self.label_names, self.scores.tolist())]
        drawn = draw_bounding_boxes(_to_uint8(image.cpu()), self.boxes.cpu(), labels=names, width=width,
                                    colors="red")
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
        return drawn.permute(1, 2, 0).numpy()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`draw`'s overlay as a PNG file."""
        return save_png(self.draw(), path)
