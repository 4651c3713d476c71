"""Seeded region growing (Adams & Bischof style), grown breadth-first with a vectorised frontier.

Growth is layer-synchronous: in each step every pixel added in the previous step offers its
unlabelled neighbours (4- or 8-connected) to its region; a neighbour is accepted when its distance
to the region's reference is at most ``tolerance``. The reference is the seed's value
(``criterion="seed"``) or the region's running mean, updated after each layer (``"mean"``). A pixel
offered by several regions in the same layer goes to the nearest reference (ties: lowest label), so
the result does not depend on the order of the seeds beyond that tie rule. Distance is the absolute
grey difference (``mode="intensity"``; RGB is converted with :func:`to_gray`) or the Euclidean RGB
distance (``mode="color"``).

Label maps are (H, W) int64: 0 = unassigned, k = region grown from seed k (1-based).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from visiontasks.classic.image import image_features, to_gray
from visiontasks.classic.split_merge import merge_regions

__all__ = ["region_grow", "auto_seeds", "region_growing_segment", "grow_labels"]

_OFFSETS = {
    4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    8: ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
}


def grow_labels(features: np.ndarray, labels: np.ndarray, frontier: np.ndarray, tolerance: float,
                connectivity: int = 4, criterion: str = "seed") -> np.ndarray:
    """Grows an existing label map breadth-first from ``frontier`` (the engine of this module).

    Args:
        features: (H, W, C) float pixel features.
        labels: (H, W) int64 labels, 0 = free; regions only grow into free pixels. Not modified.
        frontier: (F,) flat indices of labelled pixels to grow from.
        tolerance: largest accepted distance to the region reference (``np.inf``: accept all).
        connectivity: 4 or 8.
        criterion: "seed" (references fixed at the region means of ``labels``, i.e. the seed
            values for one-pixel seeds) or "mean" (running region means).

    Returns:
        (H, W) int64 grown label map.
    """
    if connectivity not in _OFFSETS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if criterion not in ("seed", "mean"):
        raise ValueError(f"criterion must be 'seed' or 'mean', got {criterion!r}")
    h, w, c = features.shape
    feats = features.reshape(-1, c)
    lab = labels.reshape(-1).astype(np.int64, copy=True)
    k = int(lab.max(initial=0)) + 1
    counts = np.bincount(lab, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(lab, feats[:, j], minlength=k) for j in range(c)], axis=1)
    refs = sums / np.maximum(counts, 1)[:, None]
    dy, dx = (np.array(v) for v in zip(*_OFFSETS[connectivity]))
    frontier = np.asarray(frontier, dtype=np.int64)
    while frontier.size:
        r, col = np.divmod(frontier, w)
        ny, nx = r[:, None] + dy, col[:, None] + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nb = (ny * w + nx)[ok]
        src = np.broadcast_to(frontier[:, None], ok.shape)[ok]
        free = lab[nb] == 0
        nb, reg = nb[free], lab[src[free]]
        dist = np.sqrt(((feats[nb] - refs[reg]) ** 2).sum(axis=1))
        keep = dist <= tolerance
        nb, reg, dist = nb[keep], reg[keep], dist[keep]
        order = np.lexsort((reg, dist, nb))
        nb, reg = nb[order], reg[order]
        first = np.ones(nb.size, dtype=bool)
        first[1:] = nb[1:] != nb[:-1]
        nb, reg = nb[first], reg[first]
        lab[nb] = reg
        if criterion == "mean" and nb.size:
            counts += np.bincount(reg, minlength=k)
            sums += np.stack([np.bincount(reg, feats[nb, j], minlength=k) for j in range(c)], axis=1)
            refs = sums / np.maximum(counts, 1)[:, None]
        frontier = nb
    return lab.reshape(h, w)


def _seed_labels(shape: tuple[int, int], seeds: np.ndarray, first_label: int = 1) -> np.ndarray:
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1, 2)
    h, w = shape
    if ((seeds < 0) | (seeds >= np.array([h, w]))).any():
        raise ValueError(f"seeds must be (row, col) inside the {h}x{w} image, got {seeds.tolist()!r}")
    flat = seeds[:, 0] * w + seeds[:, 1]
    if np.unique(flat).size != flat.size:
        raise ValueError(f"seeds must be distinct, got {seeds.tolist()!r}")
    labels = np.zeros(h * w, dtype=np.int64)
    labels[flat] = np.arange(first_label, first_label + flat.size)
    return labels.reshape(h, w)


def region_grow(image: np.ndarray, seeds: Sequence[tuple[int, int]] | np.ndarray, tolerance: float,
                connectivity: int = 4, mode: str = "intensity", criterion: str = "seed") -> np.ndarray:
    """Grows one region per seed (see the module docstring for the rules).

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        seeds: K distinct (row, col) pixel positions.
        tolerance: largest accepted distance to the seed value / region mean (grey levels).
        connectivity: 4 or 8.
        mode: "intensity" or "color".
        criterion: "seed" or "mean".

    Returns:
        (H, W) int64 label map: 0 = unassigned, k = region of seed k (1-based, in the given order).
    """
    feats = image_features(image, mode)
    labels = _seed_labels(feats.shape[:2], seeds)
    return grow_labels(feats, labels, np.flatnonzero(labels.ravel()), tolerance, connectivity, criterion)


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    gray = cv2.GaussianBlur(to_gray(image), (5, 5), 0).astype(np.float32)
    return cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))


def auto_seeds(image: np.ndarray, spacing: int = 24, mask: np.ndarray | None = None) -> np.ndarray:
    """Seeds at the flattest points: the gradient-magnitude minimum of each ``spacing`` grid cell.

    The gradient is the Sobel magnitude of the 5x5-Gaussian-blurred grey image; cells are aligned
    at (0, 0) (the last row/column of cells may be smaller). Ties go to the first pixel in raster
    order within the cell.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        spacing: cell side in pixels (>= 1).
        mask: optional (H, W) bool; only pixels where it is True may be seeds, and cells without
            any such pixel get none.

    Returns:
        (K, 2) int64 seed positions (row, col), cells in raster order.
    """
    if spacing < 1:
        raise ValueError(f"spacing must be >= 1, got {spacing!r}")
    grad = _gradient_magnitude(image).astype(np.float64)
    h, w = grad.shape
    if mask is not None:
        grad = np.where(mask, grad, np.inf)
    gh, gw = -(-h // spacing), -(-w // spacing)
    padded = np.full((gh * spacing, gw * spacing), np.inf)
    padded[:h, :w] = grad
    cells = padded.reshape(gh, spacing, gw, spacing).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    arg = cells.argmin(axis=2)
    valid = np.isfinite(np.take_along_axis(cells, arg[..., None], axis=2)[..., 0])
    rows = np.arange(gh)[:, None] * spacing + arg // spacing
    cols = np.arange(gw)[None, :] * spacing + arg % spacing
    return np.stack([rows[valid], cols[valid]], axis=1).astype(np.int64)


def region_growing_segment(image: np.ndarray, tolerance: float = 20.0, spacing: int = 24, connectivity: int = 4,
                           mode: str = "color", criterion: str = "mean", rounds: int = 2,
                           merge_threshold: float | None = None) -> np.ndarray:
    """Region growing over the whole image: auto seeds, re-seeding, an unbounded pass, merging.

    1. grow from :func:`auto_seeds`; 2. ``rounds`` times, place new auto seeds in the still
    unassigned pixels and grow them (existing regions are frozen); 3. grow every region with
    unbounded tolerance (nearest reference wins) so that every pixel is labelled; 4. since grid
    seeds split every flat area into one region per cell, merge adjacent regions whose means are
    within ``merge_threshold`` (:func:`visiontasks.classic.split_merge.merge_regions`).

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        tolerance: growth tolerance (grey levels / RGB distance).
        spacing: seed grid spacing in pixels.
        connectivity: 4 or 8.
        mode: "intensity" or "color".
        criterion: "seed" or "mean".
        rounds: re-seeding rounds before the final pass.
        merge_threshold: mean distance up to which adjacent regions are merged (default:
            ``tolerance``; 0 keeps every grown region apart unless their means are equal).

    Returns:
        (H, W) int64 label map, every pixel in a region 1..K.
    """
    feats = image_features(image, mode)
    labels = region_grow(image, auto_seeds(image, spacing), tolerance, connectivity, mode, criterion)
    for _ in range(rounds):
        free = labels == 0
        if not free.any():
            break
        new = _seed_labels(labels.shape, auto_seeds(image, spacing, free), int(labels.max()) + 1)
        labels = grow_labels(feats, labels + new, np.flatnonzero(new.ravel()), tolerance, connectivity, criterion)
    if (labels == 0).any():
        frontier = np.flatnonzero(labels.ravel() > 0)
        labels = grow_labels(feats, labels, frontier, np.inf, connectivity, "seed")  # refs: region means
    return merge_regions(feats, labels, tolerance if merge_threshold is None else merge_threshold)

