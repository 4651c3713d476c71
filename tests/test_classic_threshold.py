"""Thresholds: Otsu by hand vs OpenCV and scikit-image, global threshold, adaptive vs a naive loop."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.filters import threshold_otsu

from visiontasks.classic import adaptive_threshold, global_threshold, otsu_threshold, to_gray


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sparse_values = rng.choice(256, size=7, replace=False)  # empty histogram bins: ties
    return [
        data.coins(),
        rng.integers(0, 256, size=(37, 53), dtype=np.uint8),
        np.clip(rng.normal(90, 40, size=(40, 30)), 0, 255).astype(np.uint8),
        rng.choice(sparse_values, size=(25, 31)).astype(np.uint8),
        np.array([[3, 3, 200, 200]], dtype=np.uint8),
    ]


@pytest.mark.parametrize("index", range(5))
def test_otsu_equals_opencv_and_skimage(index):
    gray = _images()[index]
    t, mask = otsu_threshold(gray)
    t_cv, dst = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert t == int(t_cv)
    assert np.array_equal(mask, dst.astype(np.int64))  # OpenCV: 1 where gray > t
    assert t == threshold_otsu(gray)  # skimage: same t, foreground is image > t (no off-by-one)
    assert mask.dtype == np.int64


def test_otsu_maximises_between_class_variance_by_brute_force():
    gray = _images()[2].astype(np.float64)
    best, best_t = -1.0, None
    for t in range(255):
        lo, hi = gray[gray <= t], gray[gray > t]
        if lo.size and hi.size:
            var = lo.size * hi.size * (lo.mean() - hi.mean()) ** 2
            if var > best * (1 + 1e-12):
                best, best_t = var, t
    assert otsu_threshold(gray.astype(np.uint8))[0] == best_t


def test_otsu_constant_image_has_no_foreground():
    t, mask = otsu_threshold(np.full((4, 5), 77, np.uint8))
    assert t == 77 and not mask.any()


def test_global_threshold_is_strictly_greater():
    gray = np.array([[0, 99, 100], [101, 255, 100]], dtype=np.uint8)
    assert global_threshold(gray, 100).tolist() == [[0, 0, 0], [1, 1, 0]]


def test_to_gray_weights_and_passthrough():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    assert to_gray(rgb).tolist() == [[76, 150, 29]]  # round(255 * (0.299, 0.587, 0.114))
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert to_gray(gray) is gray
    with pytest.raises(ValueError):
        to_gray(np.zeros((2, 2, 4), np.uint8))


def _naive_adaptive(gray: np.ndarray, block: int, c: float, method: str) -> np.ndarray:
    """Plain loop: replicated borders, (weighted) block mean rounded half up, gray - mean > -ceil(C)."""
    if method == "mean":
        w1 = np.full(block, 1.0 / block)
    else:  # OpenCV's fixed binomial kernels for block <= 7 with sigma = 0
        w1 = {3: np.array([1, 2, 1]) / 4, 5: np.array([1, 4, 6, 4, 1]) / 16}[block]
    r = block // 2
    h, w = gray.shape
    out = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                    acc += w1[dy + r] * w1[dx + r] * float(gray[yy, xx])
            mean = np.floor(acc + 0.5)
            out[y, x] = int(gray[y, x] - mean > -np.ceil(c))
    return out


@pytest.mark.parametrize("method", ["mean", "gaussian"])
@pytest.mark.parametrize("block,c", [(3, 2.0), (5, -1.5)])
def test_adaptive_matches_naive_loop(method, block, c):
    gray = np.random.default_rng(1).integers(0, 256, size=(7, 9), dtype=np.uint8)
    gray[2:5, 3:6] = 128  # a flat patch puts pixels right at the threshold
    assert np.array_equal(adaptive_threshold(gray, block, c, method), _naive_adaptive(gray, block, c, method))


def test_adaptive_rejects_bad_arguments():
    gray = np.zeros((5, 5), np.uint8)
    for kwargs in ({"block_size": 4}, {"block_size": 1}, {"method": "median"}):
        with pytest.raises(ValueError):
            adaptive_threshold(gray, **kwargs)
