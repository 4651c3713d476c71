"""Classic (non-learned) segmentation baselines on numpy images.

Images are (H, W, 3) uint8 RGB or (H, W) uint8 grey. Every method returns an (H, W) int64 map:
binary masks (1 = above the threshold) for the thresholding methods, region maps (each value one
region) for the others. :func:`segment_classic` turns them into class maps for the mIoU
evaluators: a foreground/background map (0/1, by the border rule of :mod:`.labels`) or, given the
ground truth, the oracle map that labels each region with its majority class (an upper bound).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from visiontasks.classic.edges import canny_edges, edge_segment
from visiontasks.classic.image import image_features, to_gray
from visiontasks.classic.labels import border_values, foreground_background, gt_to_fg_bg, oracle_labels
from visiontasks.classic.region_growing import auto_seeds, grow_labels, region_grow, region_growing_segment
from visiontasks.classic.split_merge import adjacent_pairs, merge_regions, quadtree_split, split_merge
from visiontasks.classic.threshold import adaptive_threshold, global_threshold, otsu_from_histogram, otsu_threshold

__all__ = [
    "CLASSIC_METHODS", "adaptive_threshold", "adjacent_pairs", "auto_seeds", "border_values", "canny_edges",
    "edge_segment", "foreground_background", "global_threshold", "grow_labels", "gt_to_fg_bg", "image_features",
    "merge_regions", "oracle_labels", "otsu_from_histogram", "otsu_threshold", "quadtree_split", "region_grow",
    "region_growing_segment", "segment_classic", "split_merge", "to_gray",
]


def _global(rgb: np.ndarray) -> np.ndarray:
    return global_threshold(to_gray(rgb), 127)


def _otsu(rgb: np.ndarray) -> np.ndarray:
    return otsu_threshold(to_gray(rgb))[1]


def _adaptive(rgb: np.ndarray) -> np.ndarray:
    return adaptive_threshold(to_gray(rgb), block_size=51, C=5.0, method="gaussian")


def _region_growing(rgb: np.ndarray) -> np.ndarray:
    return region_growing_segment(rgb, tolerance=20.0, spacing=24, mode="intensity", criterion="mean")


def _split_merge(rgb: np.ndarray) -> np.ndarray:
    return split_merge(rgb, split_threshold=20.0, merge_threshold=30.0, min_size=4, mode="intensity")


def _edges(rgb: np.ndarray) -> np.ndarray:
    return edge_segment(rgb, low=50.0, high=150.0)


#: name -> ``(rgb (H, W, 3) uint8) -> (H, W) int64`` binary mask or region map, default settings.
CLASSIC_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "global": _global,
    "otsu": _otsu,
    "adaptive": _adaptive,
    "region_growing": _region_growing,
    "split_merge": _split_merge,
    "edges": _edges,
}


def segment_classic(method: str, rgb: np.ndarray, gt: np.ndarray | None = None, oracle: bool = False) -> np.ndarray:
    """Runs a classic method and turns its output into a class map.

    Args:
        method: a key of :data:`CLASSIC_METHODS`.
        rgb: (H, W, 3) uint8 RGB image.
        gt: (H, W) ground-truth class map (0..C, 255 ignore); needed when ``oracle`` is True.
        oracle: label each region with its majority ground-truth class instead of applying the
            foreground/background rule.

    Returns:
        (H, W) int64 class map: 0/1 background/foreground, or ground-truth class ids (oracle).
    """
    if method not in CLASSIC_METHODS:
        raise ValueError(f"unknown classic method {method!r}; choose from {sorted(CLASSIC_METHODS)!r}")
    if oracle and gt is None:
        raise ValueError("oracle=True needs the ground truth gt")
    regions = CLASSIC_METHODS[method](rgb)
    return oracle_labels(regions, gt) if oracle else foreground_background(regions)
