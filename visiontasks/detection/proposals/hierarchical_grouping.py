"""Uijlings et al.'s fast mode from OpenCV's own parts, with the paper's ranking.

Why not ``SelectiveSearchSegmentation.process()``: it returns bare rectangles, already
deduplicated and sorted by OpenCV's own rank, ``rand() / RAND_MAX * level`` with ``level`` = 1
for an initial segment and ``max(child levels) + 1`` for a merge, i.e. the depth of the merge
tree, not its order (opencv_contrib ``modules/ximgproc/src/selectivesearchsegmentation.cpp``,
``hierarchicalGrouping``: "Compute regions' rank", "inverted from the paper"; ``process()`` then
pools every hierarchy, sorts and drops duplicates). Even one hierarchy per ``process()`` call
loses the position of a region in its hierarchy, which is what the paper ranks by. So this
module drives the same OpenCV parts itself, one hierarchy at a time:

* ``cv2.ximgproc.segmentation.createGraphSegmentation(sigma, k, min_size)`` for the initial
  segments (the paper: Felzenszwalb with ``sigma = 0.8`` and ``min_size = k``);
* the strategies built with ``createSelectiveSearchSegmentationStrategyMultiple`` from OpenCV's
  colour, texture, size and fill strategies, called through their ``setImage`` / ``get`` /
  ``merge``;
* :func:`group` repeats ``hierarchicalGrouping``'s loop: neighbours as OpenCV finds them (left,
  up and up-left pixel of every pixel not in the first row or column), merge the most similar
  pair, the new region keeps the smaller strategy slot, sizes add up, the merged pair's
  similarities are replaced by the new region's with each of their neighbours. A heap replaces
  OpenCV's re-sort of every similarity after each merge; only ties may be broken differently.
  ``tests/test_proposals_selective_search.py`` checks that the boxes equal ``process()``'s for
  the same single image, segmentation and strategy.

The released ranking (Uijlings' SelectiveSearchCodeIJCV ``Image2HierarchicalGrouping.m``, the
loop "Loop over all merging strategies" and "Also save the initial boxes"; the paper, Sec. 3.3,
"Combining Locations"): in a hierarchy of M merges, the i-th merge gets priority ``M - i + 1``
(the last merge, the top, is 1); the initial segments of a segmentation get ``M + 1`` once for
all its strategies. Then (rbgirshick/rcnn ``selective_search/selective_search_boxes.m`` lines
59-65, the IJCV demo) every priority is multiplied by a uniform random number and the boxes of
all hierarchies are sorted ascending; the caller drops small and duplicate boxes after that.

Fast mode (the paper's Table 5 / ``selective_search_boxes.m`` lines 34-46 with ``fast_mode``):
colour spaces HSV and Lab, ``k`` in {50, 100} with ``min_size = k``, strategies C+T+S+F and T+S+F:
4 segmentations, 8 hierarchies. The colour spaces are 8-bit as in the released code
(SelectiveSearchCodeIJCV ``Image2ColourSpace.m``, cases 'Hsv' and 'Lab', whose uint8 image is what
``mexFelzenSegmentIndex`` segments and the strategies measure): HSV is ``im2uint8(rgb2hsv(im))``, so
the hue spans 0-255 as ``round(255 * degrees / 360)`` (OpenCV's ``COLOR_BGR2HSV`` on uint8, which its
presets use, stops at 179 and shrinks hue edges to 0.7 of theirs before the threshold ``k``;
``COLOR_BGR2HSV_FULL`` scales by 256 / 360, so blue is 171, not MATLAB's 170); Lab
is MATLAB's 8-bit encoding (L scaled to 0-255, a and b offset by 128), which is OpenCV's
``COLOR_BGR2Lab`` on uint8 (MATLAB's ``srgb2lab`` adapts to a D50 white, OpenCV's to D65: left as is).

Shape shorthand: H, W = working image height and width; N = initial segments; M = merges; R = boxes.
Boxes are inclusive 0-based pixel corners ``(x1, y1, x2, y2)`` at the working scale.
"""
from __future__ import annotations

import heapq
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["PAPER_COLOUR_SPACES", "PAPER_KS", "PAPER_SIGMA", "group", "initial_segments", "paper_boxes",
           "paper_hierarchies", "paper_strategies"]

PAPER_COLOUR_SPACES: tuple[str, ...] = ("hsv", "lab")
PAPER_KS: tuple[int, ...] = (50, 100)
PAPER_SIGMA: float = 0.8


def _convert(bgr: np.ndarray, space: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> the released code's 8-bit HSV or Lab (module docstring)."""
    import cv2

    if space == "lab":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    hsv = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)  # H in degrees, S and V in [0, 1]
    hsv[..., 0] /= 360.0
    return np.floor(hsv * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # im2uint8: round(x * 255)


def paper_strategies() -> list[Any]:
    """C+T+S+F and T+S+F as OpenCV multiple strategies (equal weights), sharing the T, S and F
    instances as ``switchToSelectiveSearchFast`` does (T's histograms are then cached by image id)."""
    from cv2.ximgproc import segmentation as seg

    colour = seg.createSelectiveSearchSegmentationStrategyColor()
    texture = seg.createSelectiveSearchSegmentationStrategyTexture()
    size = seg.createSelectiveSearchSegmentationStrategySize()
    fill = seg.createSelectiveSearchSegmentationStrategyFill()
    return [seg.createSelectiveSearchSegmentationStrategyMultiple(colour, texture, size, fill),
            seg.createSelectiveSearchSegmentationStrategyMultiple(texture, size, fill)]


def initial_segments(image: np.ndarray, k: float, sigma: float = PAPER_SIGMA,
                     min_size: int | None = None) -> np.ndarray:
    """Felzenszwalb-Huttenlocher labels of an image through OpenCV's graph segmentation.

    Args:
        image: (H, W, C) uint8, the colour space to segment.
        k: the threshold; sigma: the pre-smoothing; min_size: the smallest segment in pixels
            (None: ``k``, the paper's choice).

    Returns:
        (H, W) int32 labels 0..N-1.
    """
    from cv2.ximgproc import segmentation as seg

    gs = seg.createGraphSegmentation(sigma=float(sigma), k=float(k), min_size=int(k if min_size is None else min_size))
    return np.ascontiguousarray(gs.processImage(image), dtype=np.int32)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) unique label pairs a < b that OpenCV's ``process()`` calls neighbours."""
    here = labels[1:, 1:]
    pairs = np.concatenate([np.stack([here, other], -1).reshape(-1, 2)
                            for other in (labels[1:, :-1], labels[:-1, 1:], labels[:-1, :-1])])
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), np.int32)


def _label_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """(N, 4) inclusive boxes of labels 0..N-1 (every label 0..N-1 occurs)."""
    slices = ndimage.find_objects(labels + 1, max_label=n)
    return np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices], np.int64)


def group(image: np.ndarray, labels: np.ndarray, strategy: Any, image_id: int = -1) -> np.ndarray:
    """One hierarchy: greedy merging of the most similar neighbours until none are left.

    Args:
        image: (H, W, C) uint8, the colour space the strategy measures.
        labels: (H, W) int32 initial segments 0..N-1.
        strategy: an OpenCV ``SelectiveSearchSegmentationStrategy``.
        image_id: passed to ``setImage`` (the same id for the same image and labels lets a shared
            texture or colour strategy reuse its histograms; -1: never reuse).

    Returns:
        (M, 4) int64 boxes of the merged regions, in merge order (the last is the top).
    """
    n = int(labels.max()) + 1
    boxes = np.zeros((2 * n - 1, 4), np.int64)
    boxes[:n] = _label_boxes(labels, n)
    sizes = np.bincount(labels.ravel(), minlength=n).astype(np.int32)  # OpenCV's strategies read it in place
    strategy.setImage(image, labels, sizes, image_id)
    slot = list(range(n))  # region -> the strategy's row (OpenCV's Region::id)
    alive = [True] * n
    adj: list[set[int]] = [set() for _ in range(n)]
    heap = []
    for a, b in _neighbour_pairs(labels).tolist():
        adj[a].add(b)
        adj[b].add(a)
        heap.append((-strategy.get(a, b), a, b))
    heapq.heapify(heap)
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        new = len(slot)
        sa, sb = slot[a], slot[b]
        strategy.merge(sa, sb)
        sizes[sa] += sizes[sb]
        sizes[sb] = sizes[sa]
        slot.append(min(sa, sb))
        alive[a] = alive[b] = False
        alive.append(True)
        boxes[new, :2] = np.minimum(boxes[a, :2], boxes[b, :2])
        boxes[new, 2:] = np.maximum(boxes[a, 2:], boxes[b, 2:])
        nbrs = (adj[a] | adj[b]) - {a, b}
        adj.append(nbrs)
        for c in sorted(nbrs):
            adj[c].discard(a)
            adj[c].discard(b)
            adj[c].add(new)
            heapq.heappush(heap, (-strategy.get(slot[new], slot[c]), new, c))
    return boxes[n:len(slot)].copy()


def paper_hierarchies(bgr: np.ndarray, ks: Sequence[int] = PAPER_KS,
                      colour_spaces: Sequence[str] = PAPER_COLOUR_SPACES,
                      sigma: float = PAPER_SIGMA) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every hierarchy of the fast mode with the released code's priorities, before the noise.

    Args:
        bgr: (H, W, 3) uint8 BGR working image.
        ks, colour_spaces, sigma: the diversification (defaults: the paper's fast mode).

    Returns:
        One ``(boxes (R, 4) int64, priority (R,) float64)`` per segmentation (``ks`` outer,
        colour spaces inner, as ``selective_search_boxes.m``): its initial segments (priority
        M + 1, M = the first strategy's merges) and each strategy's merges (M_s, ..., 1).
    """
    out = []
    image_id = 0
    for k in ks:
        for space in colour_spaces:
            image = _convert(bgr, space)
            labels = initial_segments(image, k, sigma)
            n = int(labels.max()) + 1
            merged = [group(image, labels, s, image_id) for s in paper_strategies()]
            image_id += 1
            boxes = [_label_boxes(labels, n), *merged]
            prio = [np.full(n, len(merged[0]) + 1.0), *[np.arange(len(m), 0, -1, dtype=np.float64) for m in merged]]
            out.append((np.concatenate(boxes), np.concatenate(prio)))
    return out


def paper_boxes(bgr: np.ndarray, seed: int = 1, ks: Sequence[int] = PAPER_KS,
                colour_spaces: Sequence[str] = PAPER_COLOUR_SPACES, sigma: float = PAPER_SIGMA) -> np.ndarray:
    """All boxes of the fast mode, ranked by priority x uniform noise (duplicates kept).

    Args:
        bgr: (H, W, 3) uint8 BGR working image.
        seed: seeds ``numpy.random.default_rng`` for the noise; the same seed, image and
            parameters give the same ranking.
        ks, colour_spaces, sigma: as :func:`paper_hierarchies`.

    Returns:
        (R, 4) int64 inclusive boxes at the working scale, best first (a stable sort of
        ``priority * U[0, 1)``).
    """
    parts = paper_hierarchies(bgr, ks, colour_spaces, sigma)
    boxes = np.concatenate([b for b, _ in parts])
    priority = np.concatenate([p for _, p in parts])
    priority = priority * np.random.default_rng(seed).random(len(priority))
    return boxes[np.argsort(priority, kind="stable")]
