"""Image conversions shared by the classic methods: RGB to grey, and per-pixel feature arrays.

Images are numpy arrays: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_gray", "image_features"]


def to_gray(image: np.ndarray) -> np.ndarray:
    """Converts an RGB image to grey (ITU-R BT.601 weights, OpenCV's rounding); grey passes through.

    Args:
        image: (H, W, 3) uint8 RGB, or (H, W) uint8 grey.

    Returns:
        (H, W) uint8 grey image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype!r}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape!r}")


def image_features(image: np.ndarray, mode: str) -> np.ndarray:
    """Per-pixel features for distance computations.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        mode: "intensity" (grey level, C = 1) or "color" (RGB, C = 3; a grey image gives C = 1).

    Returns:
        (H, W, C) float64 features.
    """
    gray = to_gray(image)  # also validates dtype and shape
    if mode == "intensity":
        return gray[..., None].astype(np.float64)
    if mode == "color":
        image = np.asarray(image)
        return (image[..., None] if image.ndim == 2 else image).astype(np.float64)
    raise ValueError(f"mode must be 'intensity' or 'color', got {mode!r}")
