"""Split-and-merge: flat rectangles recovered exactly, the quadtree vs a recursive split, merge end state."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from visiontasks.classic import adjacent_pairs, merge_regions, quadtree_split, split_merge


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two label maps group the pixels identically (labels may be renamed)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _rectangles() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((13, 19), 50, np.uint8)
    truth = np.ones((13, 19), np.int64)
    img[:6, 9:], truth[:6, 9:] = 200, 2
    img[6:, 9:], truth[6:, 9:] = 120, 3
    return img, truth


@pytest.mark.parametrize("criterion", ["range", "std"])
def test_flat_rectangles_are_recovered_exactly(criterion):
    img, truth = _rectangles()
    labels = split_merge(img, split_threshold=0, merge_threshold=10, min_size=1, criterion=criterion)
    assert labels.dtype == np.int64 and labels.min() == 1
    assert _same_partition(labels, truth)


def test_rectangles_with_noise_and_colour():
    img, truth = _rectangles()
    rgb = np.stack([img, 255 - img, img // 2], axis=2).astype(np.int16)
    rgb += np.random.default_rng(0).integers(-3, 4, size=rgb.shape, dtype=np.int16)
    labels = split_merge(rgb.astype(np.uint8), split_threshold=8, merge_threshold=20, min_size=1, mode="color")
    assert _same_partition(labels, truth)


def _naive_split(feat: np.ndarray, t: float, min_size: int) -> np.ndarray:
    """Recursive quadtree on the power-of-two padded square, range criterion."""
    h, w = feat.shape
    size = 1 << int(np.ceil(np.log2(max(h, w))))
    out = np.zeros((h, w), np.int64)
    counter = [0]

    def rec(y: int, x: int, s: int) -> None:
        block = feat[y:y + s, x:x + s]
        if block.size == 0:
            return
        if s == min_size or block.max() - block.min() <= t:
            counter[0] += 1
            out[y:y + s, x:x + s] = counter[0]
            return
        half = s // 2
        for dy in (0, half):
            for dx in (0, half):
                rec(y + dy, x + dx, half)

    rec(0, 0, size)
    return out


@pytest.mark.parametrize("min_size", [1, 2, 4])
def test_quadtree_matches_recursive_split(min_size):
    rng = np.random.default_rng(min_size)
    img = cv2.GaussianBlur(rng.integers(0, 256, size=(21, 27), dtype=np.uint8), (7, 7), 0).astype(np.float64)
    ours = quadtree_split(img, 12, min_size)
    assert _same_partition(ours, _naive_split(img, 12, min_size))
    # every leaf is an axis-aligned square block (clipped by the image border)
    for v in np.unique(ours):
        ys, xs = np.nonzero(ours == v)
        assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == ys.size


def test_merge_end_state_and_connectivity():
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.integers(0, 256, size=(32, 40), dtype=np.uint8), (9, 9), 0).astype(np.float64)
    leaves = quadtree_split(img, 6, 1)
    merged = merge_regions(img, leaves, 9.0)
    assert 1 < merged.max() < leaves.max()
    means = np.bincount(merged.ravel(), img.ravel()) / np.maximum(np.bincount(merged.ravel()), 1)
    pairs = adjacent_pairs(merged)
    assert (np.abs(means[pairs[:, 0]] - means[pairs[:, 1]]) > 9.0).all()  # nothing left to merge
    for v in np.unique(merged):  # merged regions are unions of touching leaves: 4-connected
        assert cv2.connectedComponents((merged == v).astype(np.uint8), connectivity=4)[0] == 2
    # every merged region is a union of whole leaves
    assert len(np.unique(np.stack([leaves.ravel(), merged.ravel()], 1), axis=0)) == leaves.max()


def test_adjacent_pairs_hand_made():
    labels = np.array([[1, 1, 2], [3, 3, 2], [3, 4, 4]])
    assert adjacent_pairs(labels).tolist() == [[1, 2], [1, 3], [2, 3], [2, 4], [3, 4]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        quadtree_split(np.zeros((4, 4)), 1, min_size=3)
    with pytest.raises(ValueError):
        quadtree_split(np.zeros((4, 4)), 1, criterion="var")
