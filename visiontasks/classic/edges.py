"""Edge-based segmentation: Canny edges, gap closing, filled closed contours.

OpenCV's Canny (Sobel gradients, non-maximum suppression, hysteresis) gives thin edges; a
morphological closing bridges small gaps; ``cv2.findContours`` (``RETR_TREE``) then yields, for
every connected edge curve, its outer boundary (even depth in the hierarchy) and its holes (odd
depth). Each outer boundary is filled with its own label, shallower ones first, so a closed curve
inside another one keeps its own region.

Label maps are (H, W) int64: 0 = not enclosed by any closed edge, k = k-th filled contour.
"""
from __future__ import annotations

import cv2
import numpy as np

from visiontasks.classic.image import to_gray

__all__ = ["canny_edges", "edge_segment"]


def canny_edges(image: np.ndarray, low: float = 50.0, high: float = 150.0, blur: int = 5, close: int = 5) -> np.ndarray:
    """Canny edges of the Gaussian-blurred grey image, closed with an elliptic kernel.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        low: lower hysteresis threshold.
        high: upper hysteresis threshold.
        blur: odd Gaussian kernel side before Canny (1 = none).
        close: side of the elliptic closing kernel (1 = none).

    Returns:
        (H, W) uint8 edge map, 255 on edges.
    """
    if blur < 1 or blur % 2 == 0:
        raise ValueError(f"blur must be odd and >= 1, got {blur!r}")
    if close < 1:
        raise ValueError(f"close must be >= 1, got {close!r}")
    gray = to_gray(image)
    if blur > 1:
        gray = cv2.GaussianBlur(gray, (blur, blur), 0)
    edges = cv2.Canny(gray, low, high, L2gradient=True)
    if close > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close, close))
        edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, kernel)
    return edges


def edge_segment(image: np.ndarray, low: float = 50.0, high: float = 150.0, blur: int = 5, close: int = 5,
                 min_area: float = 0.0) -> np.ndarray:
    """Regions enclosed by closed edge curves.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        low: lower Canny threshold.
        high: upper Canny threshold.
        blur: odd Gaussian kernel side before Canny.
        close: closing kernel side.
        min_area: outer contours enclosing less area (``cv2.contourArea``, pixels) are dropped.

    Returns:
        (H, W) int64 label map (see the module docstring).
    """
    edges = canny_edges(image, low, high, blur, close)
    contours, hierarchy = cv2.findContours(edges, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    labels = np.zeros(edges.shape, dtype=np.int32)
    if hierarchy is None:
        return labels.astype(np.int64)
    parents = hierarchy[0][:, 3]
    depth = np.zeros(len(contours), dtype=np.int64)
    for i in range(len(contours)):  # one step per contour, not per pixel
        p = parents[i]
        while p >= 0:
            depth[i] += 1
            p = parents[p]
    outer = [i for i in np.argsort(depth, kind="stable") if depth[i] % 2 == 0]
    label = 0
    for i in outer:
        if cv2.contourArea(contours[i]) < min_area:
            continue
        label += 1
        cv2.drawContours(labels, contours, int(i), label, thickness=cv2.FILLED)
    return labels.astype(np.int64)
