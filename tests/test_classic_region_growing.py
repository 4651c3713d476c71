"""Seeded region growing: hand-made cases, a naive deque BFS, OpenCV's flood fill, auto seeds."""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np
import pytest

from visiontasks.classic import auto_seeds, region_grow, region_growing_segment

# A bright L (rows 1-4 of column 1, then row 4 columns 1-3) and one bright pixel at (5, 4),
# touching the L's end (4, 3) only diagonally.
L_IMAGE = np.array([
    [10, 10, 10, 10, 10, 10],
    [10, 200, 10, 10, 10, 10],
    [10, 205, 10, 10, 10, 10],
    [10, 198, 10, 10, 10, 10],
    [10, 200, 202, 210, 10, 10],
    [10, 10, 10, 10, 201, 10],
], dtype=np.uint8)
L_MASK = (L_IMAGE > 100) & ~((np.arange(6)[:, None] == 5) & (np.arange(6) == 4))


def test_l_shape_four_vs_eight_connectivity():
    four = region_grow(L_IMAGE, [(1, 1)], tolerance=15, connectivity=4)
    eight = region_grow(L_IMAGE, [(1, 1)], tolerance=15, connectivity=8)
    assert four.dtype == np.int64
    assert np.array_equal(four, L_MASK.astype(np.int64))
    assert np.array_equal(eight, (L_IMAGE > 100).astype(np.int64))  # the diagonal pixel joins


def test_seed_versus_mean_criterion_on_a_ramp():
    ramp = np.array([[100, 108, 116, 124, 132, 140]], dtype=np.uint8)
    # Tolerance 13. Seed criterion: |116 - 100| = 16 stops the region after 108.
    # Mean criterion (per layer): 108 joins (mean 104), |116 - 104| = 12 joins (mean 108),
    # |124 - 108| = 16 is rejected.
    assert region_grow(ramp, [(0, 0)], 13).tolist() == [[1, 1, 0, 0, 0, 0]]
    assert region_grow(ramp, [(0, 0)], 13, criterion="mean").tolist() == [[1, 1, 1, 0, 0, 0]]


def test_two_seeds_compete_nearest_reference_wins():
    img = np.array([[0, 10, 20, 30, 40]], dtype=np.uint8)
    # Both seeds reach 20 in the same layer; it is 20 from 0 and 20 from 40: tie -> lower label.
    assert region_grow(img, [(0, 0), (0, 4)], 25).tolist() == [[1, 1, 1, 2, 2]]
    assert region_grow(img, [(0, 4), (0, 0)], 25).tolist() == [[2, 2, 1, 1, 1]]


def _naive_bfs(gray: np.ndarray, seed: tuple[int, int], tol: float, conn: int) -> np.ndarray:
    h, w = gray.shape
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if conn == 8 else [])
    out = np.zeros((h, w), np.int64)
    out[seed] = 1
    queue = deque([seed])
    ref = float(gray[seed])
    while queue:
        y, x = queue.popleft()
        for dy, dx in steps:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and not out[yy, xx] and abs(float(gray[yy, xx]) - ref) <= tol:
                out[yy, xx] = 1
                queue.append((yy, xx))
    return out


@pytest.mark.parametrize("conn", [4, 8])
def test_single_seed_matches_naive_bfs_and_floodfill(conn):
    rng = np.random.default_rng(conn)
    gray = cv2.GaussianBlur(rng.integers(0, 256, size=(30, 40), dtype=np.uint8), (5, 5), 0)
    for seed in [(0, 0), (15, 20), (29, 39)]:
        ours = region_grow(gray, [seed], 12, connectivity=conn)
        assert np.array_equal(ours, _naive_bfs(gray, seed, 12, conn))
        mask = np.zeros((32, 42), np.uint8)
        flags = conn | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
        cv2.floodFill(gray.copy(), mask, seed[::-1], 0, 12, 12, flags)
        assert np.array_equal(ours, mask[1:-1, 1:-1].astype(np.int64))


def _naive_layered_mean(feat: np.ndarray, seeds: list[tuple[int, int]], tol: float) -> np.ndarray:
    """Plain-loop reference of the documented semantics: layers, means updated per layer, 4-conn."""
    h, w, _ = feat.shape
    lab = np.zeros((h, w), np.int64)
    members = {k + 1: [s] for k, s in enumerate(seeds)}
    for k, s in enumerate(seeds):
        lab[s] = k + 1
    frontier = list(seeds)
    while frontier:
        means = {k: np.mean([feat[p] for p in m], axis=0) for k, m in members.items()}
        best: dict[tuple[int, int], tuple[float, int]] = {}
        for y, x in frontier:
            k = lab[y, x]
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] == 0:
                    d = float(np.sqrt(((feat[yy, xx] - means[k]) ** 2).sum()))
                    if d <= tol and (d, k) < best.get((yy, xx), (np.inf, 0)):
                        best[(yy, xx)] = (d, k)
        for p, (_, k) in best.items():
            lab[p] = k
            members[k].append(p)
        frontier = list(best)
    return lab


def test_mean_criterion_color_matches_naive_layered_loop():
    rng = np.random.default_rng(3)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, size=(14, 17, 3), dtype=np.uint8), (5, 5), 0)
    seeds = [(2, 3), (10, 12), (7, 1)]
    ours = region_grow(rgb, seeds, 18, mode="color", criterion="mean")
    assert np.array_equal(ours, _naive_layered_mean(rgb.astype(np.float64), seeds, 18))
    assert 0 < (ours > 0).sum() < ours.size  # a non-trivial case


def test_auto_seeds_are_cell_minima_of_the_gradient():
    from visiontasks.classic.region_growing import _gradient_magnitude

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(23, 30), dtype=np.uint8)
    seeds = auto_seeds(img, spacing=8)
    grad = _gradient_magnitude(img)
    expected = []
    for y0 in range(0, 23, 8):
        for x0 in range(0, 30, 8):
            cell = grad[y0:y0 + 8, x0:x0 + 8]
            dy, dx = np.unravel_index(np.argmin(cell), cell.shape)
            expected.append((y0 + dy, x0 + dx))
    assert seeds.tolist() == [list(p) for p in expected]


def test_segment_labels_every_pixel_and_separates_flat_areas():
    img = np.zeros((40, 50, 3), np.uint8)
    img[:, 25:] = (200, 40, 40)
    labels = region_growing_segment(img, tolerance=10, spacing=8, mode="color")
    assert labels.min() >= 1
    assert len(np.unique(labels)) == 2  # grid seeds in each half are merged back to one region
    assert len(np.unique(labels[:, :25])) == 1 and len(np.unique(labels[:, 25:])) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        region_grow(L_IMAGE, [(6, 0)], 5)
    with pytest.raises(ValueError):
        region_grow(L_IMAGE, [(0, 0)], 5, connectivity=6)
    with pytest.raises(ValueError):
        region_grow(L_IMAGE, [(0, 0)], 5, criterion="median")
