"""Split-and-merge segmentation (Horowitz & Pavlidis): quadtree split, then region-adjacency merge.

Split. The image is padded (virtually) to a power-of-two square ``S x S`` and the quadtree of
aligned ``2^k`` blocks is evaluated level by level from pyramids of per-block min / max / sum /
sum of squares (padding is excluded from every statistic). A block is a leaf when it is
homogeneous — ``max - min <= threshold`` (``criterion="range"``) or ``std <= threshold``
(``"std"``), taking the worst channel — or when its side equals ``min_size``.

Merge. Adjacent regions (4-neighbourhood) are merged with a union-find, most similar pair first
(a heap with lazily re-keyed entries), while the distance between their mean values (absolute grey
difference or Euclidean RGB distance) is at most ``merge_threshold``; the pass is repeated until no
adjacent pair is that close, which is the guaranteed end state.

Label maps are (H, W) int64 with regions numbered 1..K (0 is not used).
"""
from __future__ import annotations

import heapq

import numpy as np

from visiontasks.classic.image import image_features

__all__ = ["quadtree_split", "merge_regions", "split_merge", "adjacent_pairs"]


def _pool(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    """Combines each 2x2 block of the leading two axes with a binary ufunc (min, max, add)."""
    a = op(a[0::2], a[1::2])
    return op(a[:, 0::2], a[:, 1::2])


def quadtree_split(features: np.ndarray, threshold: float, min_size: int = 4, criterion: str = "range") -> np.ndarray:
    """Quadtree split into homogeneous aligned blocks.

    Args:
        features: (H, W, C) float features (or (H, W) grey).
        threshold: homogeneity threshold (see the module docstring).
        min_size: smallest block side, a power of two >= 1.
        criterion: "range" or "std".

    Returns:
        (H, W) int64 leaf map, leaves numbered 1..K in order of (level from the top, raster order).
    """
    feats = np.asarray(features, dtype=np.float64)
    feats = feats[..., None] if feats.ndim == 2 else feats
    if criterion not in ("range", "std"):
        raise ValueError(f"criterion must be 'range' or 'std', got {criterion!r}")
    if min_size < 1 or min_size & (min_size - 1):
        raise ValueError(f"min_size must be a power of two >= 1, got {min_size!r}")
    h, w, c = feats.shape
    top = max(int(np.ceil(np.log2(max(h, w, 1)))), 0)
    size = 1 << top
    lo = np.full((size, size, c), np.inf, dtype=np.float32)  # exact for 8-bit values
    hi = np.full((size, size, c), -np.inf, dtype=np.float32)
    lo[:h, :w], hi[:h, :w] = feats, feats
    s1 = np.zeros((size, size, c))
    s1[:h, :w] = feats
    s2, n = s1 ** 2, np.zeros((size, size, 1))
    n[:h, :w] = 1
    homog = []  # homog[k]: (S/2^k, S/2^k) bool, for k = 0..top
    for k in range(top + 1):
        if k:
            lo, hi = _pool(lo, np.minimum), _pool(hi, np.maximum)
            s1, s2, n = _pool(s1, np.add), _pool(s2, np.add), _pool(n, np.add)
        if criterion == "range":
            spread = (hi - lo).max(axis=2)
        else:
            cnt = np.maximum(n, 1)
            spread = np.sqrt(np.maximum(s2 / cnt - (s1 / cnt) ** 2, 0)).max(axis=2)
        homog.append((spread <= threshold) | (n[..., 0] == 0))
    min_level = min(int(np.log2(min_size)), top)
    leaves = np.zeros((size, size), dtype=np.int64)
    active = np.ones((1, 1), dtype=bool)
    next_id = 1
    for k in range(top, min_level - 1, -1):
        leaf = active & (homog[k] | (k == min_level))
        ids = np.zeros(leaf.shape, dtype=np.int64)
        ids[leaf] = np.arange(next_id, next_id + int(leaf.sum()))
        next_id += int(leaf.sum())
        leaves += np.repeat(np.repeat(ids, 1 << k, axis=0), 1 << k, axis=1)
        active = np.repeat(np.repeat(active & ~leaf, 2, axis=0), 2, axis=1)
    _, inverse = np.unique(leaves[:h, :w], return_inverse=True)
    return inverse.reshape(h, w).astype(np.int64) + 1


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Distinct unordered pairs of labels that touch (4-neighbourhood).

    Args:
        labels: (H, W) integer label map with non-negative values.

    Returns:
        (E, 2) int64 pairs ``(a, b)`` with ``a < b``, sorted.
    """
    labels = np.asarray(labels, dtype=np.int64)
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    base = int(labels.max(initial=0)) + 1
    codes = np.unique(lo * base + hi)
    return np.stack([codes // base, codes % base], axis=1)


def merge_regions(features: np.ndarray, labels: np.ndarray, merge_threshold: float) -> np.ndarray:
    """Merges adjacent regions while their mean distance is <= ``merge_threshold``.

    Args:
        features: (H, W, C) float features (or (H, W) grey).
        labels: (H, W) integer label map (non-negative).
        merge_threshold: largest mean distance of two regions that are merged.

    Returns:
        (H, W) int64 label map numbered 1..K, where no two adjacent regions have mean distance
        ``<= merge_threshold``.
    """
    feats = np.asarray(features, dtype=np.float64)
    feats = feats[..., None] if feats.ndim == 2 else feats
    _, inv = np.unique(np.asarray(labels), return_inverse=True)
    leaf = inv.reshape(labels.shape).astype(np.int64)
    r, c = int(leaf.max()) + 1, feats.shape[2]
    count = np.bincount(leaf.ravel(), minlength=r).astype(np.float64)
    total = np.stack([np.bincount(leaf.ravel(), feats[..., j].ravel(), minlength=r) for j in range(c)], axis=1)
    parent = list(range(r))
    cnt, sums = count.tolist(), total.tolist()

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def dist(x: int, y: int) -> float:
        nx, ny = cnt[x], cnt[y]
        return sum((sx / nx - sy / ny) ** 2 for sx, sy in zip(sums[x], sums[y])) ** 0.5

    while True:
        roots = np.array([find(x) for x in range(r)], dtype=np.int64)
        pairs = adjacent_pairs(roots[leaf])
        means = np.array(sums) / np.array(cnt)[:, None]
        d = np.sqrt(((means[pairs[:, 0]] - means[pairs[:, 1]]) ** 2).sum(axis=1)) if len(pairs) else np.zeros(0)
        close = d <= merge_threshold
        if not close.any():
            break
        heap = list(zip(d[close].tolist(), pairs[close, 0].tolist(), pairs[close, 1].tolist()))
        heapq.heapify(heap)
        while heap:
            key, a, b = heapq.heappop(heap)
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            cur = dist(ra, rb)
            if cur > key:  # the regions changed since this entry was pushed: re-key it
                if cur <= merge_threshold:
                    heapq.heappush(heap, (cur, ra, rb))
                continue
            if cnt[ra] < cnt[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            cnt[ra] += cnt[rb]
            sums[ra] = [x + y for x, y in zip(sums[ra], sums[rb])]
    _, out = np.unique(roots[leaf], return_inverse=True)
    return out.reshape(leaf.shape).astype(np.int64) + 1


def split_merge(image: np.ndarray, split_threshold: float = 20.0, merge_threshold: float = 20.0, min_size: int = 4,
                criterion: str = "range", mode: str = "intensity") -> np.ndarray:
    """Split-and-merge segmentation of an image.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        split_threshold: homogeneity threshold of the split (grey levels).
        merge_threshold: largest mean distance of merged regions.
        min_size: smallest quadtree block side (power of two).
        criterion: "range" (max - min) or "std".
        mode: "intensity" (grey) or "color" (RGB, worst channel / Euclidean distance).

    Returns:
        (H, W) int64 label map numbered 1..K.
    """
    feats = image_features(image, mode)
    return merge_regions(feats, quadtree_split(feats, split_threshold, min_size, criterion), merge_threshold)
