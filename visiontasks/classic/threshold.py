"""Thresholding: global, Otsu (by hand, exact) and adaptive (OpenCV), plus RGB to grey.

All functions take numpy images: ``rgb`` (H, W, 3) uint8 RGB or ``gray`` (H, W) uint8. Masks are
(H, W) int64 with ``1`` where the pixel is *above* the threshold (``gray > t``) and ``0`` elsewhere;
which side is foreground is decided later (:func:`visiontasks.classic.labels.foreground_background`).

Otsu convention. Class 0 is ``gray <= t`` and class 1 is ``gray > t``; ``t`` maximises the
between-class variance. This is the convention of both OpenCV (``cv2.threshold(..., THRESH_OTSU)``
returns ``t`` and sets ``dst = gray > t``) and scikit-image (``threshold_otsu`` returns the bin centre
``t``; its docs call ``image > t`` foreground), so for 8-bit images all three return the same
integer ``t`` and there is no off-by-one. Ties (several ``t`` giving the same partition, which happens
whenever histogram bins are empty) go to the smallest ``t``, as in both libraries. Differences:
a constant image has no split; we return ``t = value`` and an all-zero mask (scikit-image returns
the same ``t``; OpenCV returns ``t = 0``, which makes the mask all ones unless the value is 0).
"""
from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from visiontasks.classic.image import to_gray

__all__ = ["to_gray", "global_threshold", "otsu_threshold", "otsu_from_histogram", "adaptive_threshold"]


def _check_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected an (H, W) uint8 grey image, got shape {gray.shape!r} dtype {gray.dtype!r}")
    return gray


def global_threshold(gray: np.ndarray, t: float) -> np.ndarray:
    """A fixed threshold.

    Args:
        gray: (H, W) uint8 grey image.
        t: threshold.

    Returns:
        (H, W) int64 mask, 1 where ``gray > t``.
    """
    return (_check_gray(gray) > t).astype(np.int64)


def otsu_from_histogram(hist: np.ndarray) -> int:
    """Otsu's threshold from a 256-bin histogram, in exact rational arithmetic.

    With ``n0(t)`` pixels at or below ``t`` holding intensity sum ``s0(t)`` (of ``N`` and ``S`` in
    total), the between-class variance is ``(S n0 - N s0)^2 / (N^2 n0 (N - n0))``; it is compared as
    an exact fraction over the ``t`` that leave both classes non-empty, and the first maximum wins.

    Args:
        hist: (256,) non-negative integer counts.

    Returns:
        The threshold ``t`` (class 1 is ``> t``); for a single occupied bin, that bin's value.
    """
    hist = np.asarray(hist)
    if hist.shape != (256,) or (hist < 0).any():
        raise ValueError(f"expected 256 non-negative counts, got shape {hist.shape!r}")
    counts = [int(c) for c in hist]
    total = sum(counts)
    if total == 0:
        raise ValueError("histogram is empty")
    grand = sum(i * c for i, c in enumerate(counts))
    best_t, best = None, Fraction(-1)
    n0 = s0 = 0
    for t in range(255):
        n0 += counts[t]
        s0 += t * counts[t]
        if n0 == 0 or n0 == total:
            continue
        sigma = Fraction((grand * n0 - total * s0) ** 2, n0 * (total - n0))
        if sigma > best:
            best_t, best = t, sigma
    if best_t is None:  # a constant image: no split exists
        return int(np.flatnonzero(hist)[0])
    return best_t


def otsu_threshold(gray: np.ndarray) -> tuple[int, np.ndarray]:
    """Otsu's method on an 8-bit image (see the module docstring for the convention).

    Args:
        gray: (H, W) uint8 grey image.

    Returns:
        ``(t, mask)``: the integer threshold and the (H, W) int64 mask ``gray > t``.
    """
    gray = _check_gray(gray)
    if gray.size == 0:
        raise ValueError("image is empty")
    t = otsu_from_histogram(np.bincount(gray.ravel(), minlength=256))
    return t, (gray > t).astype(np.int64)


def adaptive_threshold(gray: np.ndarray, block_size: int = 51, C: float = 5.0, method: str = "mean") -> np.ndarray:
    """Local threshold ``T(x, y) = m(x, y) - C`` with ``m`` the local (weighted) mean (OpenCV).

    ``m`` is OpenCV's box or Gaussian (sigma from ``block_size``) filter of the block around each
    pixel, rounded to uint8, with replicated borders; a pixel is 1 when ``gray - m > -ceil(C)``.

    Args:
        gray: (H, W) uint8 grey image.
        block_size: odd window side, at least 3.
        C: constant subtracted from the mean.
        method: "mean" or "gaussian".

    Returns:
        (H, W) int64 mask, 1 where the pixel is brighter than its local threshold.
    """
    gray = _check_gray(gray)
    methods = {"mean": cv2.ADAPTIVE_THRESH_MEAN_C, "gaussian": cv2.ADAPTIVE_THRESH_GAUSSIAN_C}
    if method not in methods:
        raise ValueError(f"method must be 'mean' or 'gaussian', got {method!r}")
    if block_size < 3 or block_size % 2 == 0:
        raise ValueError(f"block_size must be odd and >= 3, got {block_size!r}")
    out = cv2.adaptiveThreshold(gray, 1, methods[method], cv2.THRESH_BINARY, int(block_size), float(C))
    return out.astype(np.int64)
