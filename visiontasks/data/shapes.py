"""Procedural scenes for the embedded dataset: coloured shapes on textured, noisy backgrounds.

Each scene is drawn from a ``numpy.random.Generator``, so a seed fixes it bit for bit. Objects
may overlap (each keeps at least half of its area visible); boxes enclose the *visible* pixels,
as VOC annotators box what they see. Objects under ``SMALL_SIDE`` pixels are ``difficult`` and
are void (255) in the label map, like VOC's unlabelled regions; object outlines are void too.

Shape shorthand: S = image side (square images), K = objects in a scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SHAPE_CLASSES", "SMALL_SIDE", "Scene", "render_scene"]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
SMALL_SIDE = 12  # objects whose visible box is smaller than this on both sides are "difficult"
_EMPTY_PROB = 0.06
_SMALL_PROB = 0.08


@dataclass
class Scene:
    """One rendered image with its ground truth.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        boxes: (K, 4) int64 ``xyxy``, 0-based inclusive pixel indices of the visible part.
        labels: (K,) int64 in ``1..len(SHAPE_CLASSES)``.
        difficult: (K,) bool.
        label_map: (S, S) uint8; 0 background, class labels, 255 void (outlines, difficult objects).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    label_map: np.ndarray


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grid = rng.uniform(30, 225, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
    stripes = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi))
    img += rng.uniform(5, 25) * stripes[..., None]
    for _ in range(int(rng.integers(0, 3))):  # thin distractor lines
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])),
                 tuple(float(c) for c in rng.uniform(0, 255, 3)), 1)
    return img


def _shape_mask(rng: np.random.Generator, cls: int, size: int, side: int) -> np.ndarray:
    """Binary (S, S) mask of one shape of class index ``cls`` (0-based) and extent ``side``."""
    mask = np.zeros((size, size), dtype=np.uint8)
    r = side / 2.0
    cx, cy = rng.uniform(r, size - r, 2)
    if SHAPE_CLASSES[cls] == "circle":
        cv2.circle(mask, (int(round(cx)), int(round(cy))), max(int(round(r)), 1), 1, -1)
        return mask
    corners = 4 if SHAPE_CLASSES[cls] == "square" else 3
    start = rng.uniform(0, 2 * np.pi)
    angles = start + 2 * np.pi * np.arange(corners) / corners
    radius = r if corners == 3 else r * 0.92
    pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def _colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    local = background[mask > 0].mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - local) > 110:
            break
    return colour


def _visible_box(visible: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(visible)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def render_scene(rng: np.random.Generator, size: int = 160, max_objects: int = 4) -> Scene:
    """Draws one scene.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        size: image side S in pixels.
        max_objects: most objects in a scene (a few scenes have none).

    Returns:
        The :class:`Scene`.
    """
    img = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int64)  # index of the topmost object per pixel
    classes: list[int] = []
    areas: list[int] = []
    count = 0 if rng.random() < _EMPTY_PROB else int(rng.integers(1, max_objects + 1))
    for _ in range(count):
        for _attempt in range(15):
            cls = int(rng.integers(len(SHAPE_CLASSES)))
            small = rng.random() < _SMALL_PROB
            side = int(rng.integers(7, SMALL_SIDE)) if small else int(rng.integers(20, max(21, size * 2 // 5)))
            mask = _shape_mask(rng, cls, size, side) > 0
            trial = owner.copy()
            trial[mask] = len(classes)
            kept = [np.count_nonzero(trial == k) >= 0.5 * areas[k] for k in range(len(classes))]
            if mask.any() and all(kept):
                img[mask] = _colour(rng, img, mask)
                owner, _ = trial, classes.append(cls)
                areas.append(int(mask.sum()))
                break
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    boxes = [_visible_box(owner == k) for k in range(len(classes))]
    difficult = [(x1 - x0 + 1) < SMALL_SIDE and (y1 - y0 + 1) < SMALL_SIDE for x0, y0, x1, y1 in boxes]
    label_map = np.zeros((size, size), dtype=np.uint8)
    for k, cls in enumerate(classes):
        label_map[owner == k] = 255 if difficult[k] else cls + 1
    kernel = np.ones((3, 3), np.uint8)
    ids = (owner + 1).astype(np.uint8)
    label_map[cv2.dilate(ids, kernel) != cv2.erode(ids, kernel)] = 255
    return Scene(
        image=image,
        boxes=np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        labels=np.asarray([c + 1 for c in classes], dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        label_map=label_map,
    )
