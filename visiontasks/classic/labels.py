"""From region maps to class maps: foreground/background rule, ground-truth conversion, oracle.

Region maps are (H, W) integer arrays in which every distinct value is one region (a binary mask
is two regions). Class maps are (H, W) int64 as the segmentation evaluators expect: 0 =
background, 1..C classes, 255 = ignore.

Foreground rule (no learning, no ground truth). Objects tend to sit inside the frame, the
background to run along its edges. The regions are ranked by how many of the image's border
pixels they cover (ties: lower region value first) and taken as background, in that order, until
they cover at least ``border_cover`` of the border; every other region is foreground. The default
depends on the map: for a binary mask (at most two values) it is 0.5, so the background is the side
of the threshold that covers more of the border (at a tie, the lower value: below the threshold);
for a region map it is 1.0, so every region that touches the border is background and the regions
enclosed by others are foreground. (These two defaults were chosen on the coco128-voc *train*
split among 0.5 / 0.8 / 0.95 / 1.0; no other setting is tuned.)
"""
from __future__ import annotations

import numpy as np

__all__ = ["border_values", "foreground_background", "gt_to_fg_bg", "oracle_labels"]

IGNORE = 255


def border_values(regions: np.ndarray) -> np.ndarray:
    """Values of the border pixels (outermost rows and columns), each pixel once, in raster order."""
    regions = np.asarray(regions)
    if regions.ndim != 2 or regions.size == 0:
        raise ValueError(f"expected a non-empty (H, W) map, got shape {regions.shape!r}")
    border = np.ones(regions.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    return regions[border]


def foreground_background(regions: np.ndarray, border_cover: float | None = None) -> np.ndarray:
    """Foreground/background map by the border rule of the module docstring.

    Args:
        regions: (H, W) integer region map or binary mask.
        border_cover: fraction of the border the background regions must cover, in (0, 1];
            None: 0.5 for a binary mask, 1.0 for a region map.

    Returns:
        (H, W) int64 map: 1 = foreground, 0 = background.
    """
    regions = np.asarray(regions)
    values, counts = np.unique(border_values(regions), return_counts=True)
    if border_cover is None:
        border_cover = 0.5 if np.unique(regions).size <= 2 else 1.0
    if not 0.0 < border_cover <= 1.0:
        raise ValueError(f"border_cover must lie in (0, 1], got {border_cover!r}")
    order = np.lexsort((values, -counts))
    covered = np.cumsum(counts[order])
    n_bg = int(np.searchsorted(covered, border_cover * covered[-1], side="left")) + 1
    return (~np.isin(regions, values[order[:n_bg]])).astype(np.int64)


def gt_to_fg_bg(gt: np.ndarray) -> np.ndarray:
    """Ground truth for the foreground/background task: every object class becomes 1.

    Args:
        gt: (H, W) integer class map (0 background, 1..C, 255 ignore).

    Returns:
        (H, W) int64 map: 0 background, 1 any object, 255 ignore (kept).
    """
    gt = np.asarray(gt)
    out = (gt != 0).astype(np.int64)
    out[gt == IGNORE] = IGNORE
    return out


def oracle_labels(regions: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Labels each region with its majority ground-truth class (an upper bound for the regions).

    Ignore (255) pixels do not vote; a region made only of ignore pixels gets class 0 (those pixels
    are not scored anyway). Ties go to the lower class.

    Args:
        regions: (H, W) integer region map.
        gt: (H, W) integer class map (values 0..254, 255 = ignore).

    Returns:
        (H, W) int64 class map.
    """
    regions, gt = np.asarray(regions), np.asarray(gt)
    if regions.shape != gt.shape:
        raise ValueError(f"regions {regions.shape!r} and gt {gt.shape!r} differ in shape")
    _, region = np.unique(regions, return_inverse=True)
    region = region.ravel()
    cls = gt.ravel().astype(np.int64)
    valid = cls != IGNORE
    if (cls[valid] < 0).any() or (cls[valid] > IGNORE).any():
        raise ValueError(f"gt values must lie in 0..255, got range {(int(cls.min()), int(cls.max()))!r}")
    n_cls = int(cls[valid].max(initial=0)) + 1
    votes = np.bincount(region[valid] * n_cls + cls[valid], minlength=(int(region.max()) + 1) * n_cls)
    majority = votes.reshape(-1, n_cls).argmax(axis=1)
    return majority[region].reshape(regions.shape).astype(np.int64)
