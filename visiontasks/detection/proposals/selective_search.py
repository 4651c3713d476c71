"""Selective search (Uijlings et al. 2013) through OpenCV contrib, the way R-CNN uses it.

:func:`selective_search` resizes the image to ``resize_width`` pixels wide (R-CNN: 500, aspect
kept), proposes there in one of three modes, drops boxes with a side below ``min_size`` pixels of
that working image and exact duplicates (rbgirshick/rcnn ``selective_search/selective_search_boxes.m``
lines 67-68, ``FilterBoxesWidth`` then ``BoxRemoveDuplicates``, before line 71 scales the boxes
back), maps the boxes to the original image, drops the duplicates the mapping makes and optionally
keeps the first ``max_proposals``. Modes:

* ``paper``: the paper's fast mode (HSV, Lab x k = 50, 100 with ``min_size = k``, sigma 0.8 x
  C+T+S+F, T+S+F) built from OpenCV's graph segmentation and strategies, each hierarchy ranked
  by its merge order x a random number as the released code does: see
  :mod:`visiontasks.detection.proposals.hierarchical_grouping`.
* ``fast`` / ``quality``: OpenCV's presets ``switchToSelectiveSearchFast`` / ``...Quality``.

What OpenCV's modes run (``modules/ximgproc/src/selectivesearchsegmentation.cpp``, defaults
``base_k=150, inc_k=150, sigma=0.8``; graph segmentation ``min_size=100`` pixels, not set by the
modes) against the paper's (its Table 5 / the IJCV demo code R-CNN calls: Felzenszwalb with
``sigma=0.8`` and ``min_size = k``):

=========  ===================================================  ==========================================
           OpenCV                                               Uijlings et al. 2013
=========  ===================================================  ==========================================
fast       colour spaces HSV, Lab; k = 150, 300, 450;           HSV, Lab; k = 50, 100;
           strategies C+T+S+F and T+S+F (12 groupings)          C+T+S+F and T+S+F (8 groupings)
quality    HSV, Lab, I (grey), H (HSV's hue), "rgI" = raw R, G  HSV, Lab, rgI (normalised r, g + I), H, I;
           plus grey; k = 150, 300, 450, 600, 750;              k = 50, 100, 150, 300;
           strategies C+T+S+F, T+S+F, F, S (100 groupings)      C+T+S+F, T+S+F, F, S (80 groupings)
=========  ===================================================  ==========================================

C = colour (25-bin histogram per channel, histogram intersection), T = texture (OpenCV: Scharr
derivatives in 8 orientations, 10 bins per orientation and channel; the paper: Gaussian
derivatives, sigma 1), S = size, F = fill; a combination is their equally weighted mean.
Ranking: both give each region ``random * level`` and sort ascending, but OpenCV's level is 1
for the initial segments and grows with each merge (the depth of the merge tree; "inverted from
the paper" says its source), while the paper's level is the position in the merge order, 1 at
the top of the hierarchy. So OpenCV's first boxes are small initial segments, the paper's are
large merged regions: a top-N cap removes more recall from the presets. ``paper`` ranks the
paper's way.

Determinism: ``paper`` draws its noise from ``numpy.random.default_rng(seed)``. OpenCV's presets
draw theirs from the C library's process-global ``rand()``, so two calls in one process would
rank the same boxes differently; we reseed it (``srand(seed)``; the default 1 is the state a
fresh process starts in) through ``ctypes`` right before each run. Either way the result is a
function of the image and the parameters only (not of OpenCV's thread count, checked). Preset
calls from several threads of one process take turns (one lock around ``srand`` and OpenCV's
``process()``), so threads get the boxes a single thread gets but do not run presets in
parallel; use processes for throughput (``tools/propose.py --workers``).

Box convention: OpenCV returns pixel rectangles ``(x, y, w, h)`` covering columns
``x .. x + w - 1``. We return inclusive 0-based corners, like the VOC ground truth after
loading (docs/CONTRACTS.md): ``x1 = x, y1 = y, x2 = x + w - 1, y2 = y + h - 1``. Mapping back
from the resized image covers the same image area: ``x1' = x1 / s``, ``x2' = (x2 + 1) / s - 1``
(``s`` = resized / original width; rows with the height ratio), rounded to whole pixels,
``x2' >= x1'`` kept (when upscaling, one resized pixel is less than an original one) and
clipped to the image. A box's side is ``x2 - x1 + 1`` pixels.

Shape shorthand: H, W = image height and width; R = proposals of an image.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import math
import threading
from typing import Any, Callable

import numpy as np
import torch

from visiontasks.errors import InputError

__all__ = ["DEFAULT_PROPOSER", "PROPOSAL_METHODS", "proposal_params", "propose", "selective_search"]

MODES = ("fast", "paper", "quality")
"""Selective search modes: ``paper`` (Uijlings et al.'s fast mode, ranked their way) and OpenCV's presets."""


def _c_library() -> Any:
    """The C library whose ``rand()`` OpenCV calls (None where ctypes cannot reach it)."""
    for name in (None, ctypes.util.find_library("c")):
        try:
            lib = ctypes.CDLL(name)
            lib.srand  # noqa: B018 - probe the symbol
            return lib
        except (OSError, AttributeError, TypeError):
            continue
    return None


_LIBC = _c_library()
# srand(seed) and the preset's rand() draws form one critical section: the C library's state is
# process-global, so every preset run in the process (predict() on any model, DeconvNet's instance-wise
# proposals, a caller's own threads) takes its turn here, not only those behind one caller's lock.
_RAND_LOCK = threading.Lock()


def _to_uint8_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an HWC uint8 array or a (3, H, W) tensor."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W), got shape {tuple(image.shape)}")
        t = image.detach().cpu()
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        elif t.dtype != torch.uint8:
            raise ValueError(f"an image tensor must be float in [0, 1] or uint8, got {t.dtype}")
        return np.ascontiguousarray(t.to(torch.uint8).permute(1, 2, 0).numpy())
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, got shape {arr.shape} {arr.dtype}")
    return arr


def _check_params(mode: str, resize_width: int | None, min_size: float, max_proposals: int | None,
                  seed: int = 1) -> None:
    if not isinstance(mode, str) or mode not in MODES:
        raise InputError("mode", f"unknown selective search mode {mode!r}; valid modes: {', '.join(MODES)}")
    if resize_width is not None and (isinstance(resize_width, bool) or not isinstance(resize_width, int)
                                     or resize_width < 1):
        raise ValueError(f"resize_width must be a positive int or None, got {resize_width!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, float)) or not min_size >= 0 \
            or not math.isfinite(min_size):
        raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
    if max_proposals is not None and (isinstance(max_proposals, bool) or not isinstance(max_proposals, int)
                                      or max_proposals < 1):
        raise ValueError(f"max_proposals must be a positive int or None, got {max_proposals!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
        raise ValueError(f"seed must be an int in [0, 2**31), got {seed!r}")


def _opencv_rects(bgr: np.ndarray, mode: str, seed: int = 1) -> np.ndarray:
    """OpenCV's ranked ``(x, y, w, h)`` rectangles, (R, 4) int, with ``rand()`` reseeded."""
    import cv2

    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    with _RAND_LOCK:
        if _LIBC is not None:
            _LIBC.srand(seed)
        rects = ss.process()
    return np.asarray(rects, dtype=np.int64).reshape(-1, 4)


def _working_boxes(bgr: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Ranked inclusive ``xyxy`` boxes of the working image, (R, 4) int64, duplicates kept."""
    if mode == "paper":
        from visiontasks.detection.proposals.hierarchical_grouping import paper_boxes

        return paper_boxes(bgr, seed=seed)
    rects = _opencv_rects(bgr, mode, seed)
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)


def _first_unique(boxes: np.ndarray) -> np.ndarray:
    """The rows of (R, 4) ``boxes`` without later exact duplicates, in their order."""
    if not len(boxes):
        return boxes
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def selective_search(image: np.ndarray | torch.Tensor, mode: str = "fast", resize_width: int | None = 500,
                     min_size: float = 20, max_proposals: int | None = None, seed: int = 1) -> np.ndarray:
    """Selective search proposals of one image, in rank order, in original-image pixels.

    Args:
        image: (H, W, 3) uint8 RGB array, or a (3, H, W) tensor (float in [0, 1] or uint8).
        mode: "paper", "fast" or "quality" (see the module docstring for what each runs).
        resize_width: resize to this width before proposing, aspect kept (R-CNN: 500; up or
            down); None proposes at the original size.
        min_size: drop boxes whose width or height (``x2 - x1 + 1``) is below this many pixels
            of the working (resized) image, as R-CNN drops sides below 20 pixels of its
            500-pixel-wide image before scaling back; 0 keeps every box.
        max_proposals: keep only the first this many (after duplicates and small boxes are
            removed); None keeps all.
        seed: the ranking noise (``paper``: numpy's generator; presets: ``srand``).

    Returns:
        (R, 4) float32 ``xyxy``, inclusive 0-based whole-pixel corners within the image, in
        rank order; exact duplicates keep their first occurrence. R may be 0 (e.g. an image
        smaller than ``min_size``).

    Raises:
        InputError: ``mode`` is not one of :data:`MODES` (one line naming the key and the modes).
    """
    _check_params(mode, resize_width, min_size, max_proposals, seed)
    rgb = _to_uint8_rgb(image)
    import cv2

    h, w = rgb.shape[:2]
    if resize_width is not None and resize_width != w:
        new_h = max(1, int(round(h * resize_width / w)))
        interp = cv2.INTER_AREA if resize_width < w else cv2.INTER_LINEAR
        small = cv2.resize(rgb, (resize_width, new_h), interpolation=interp)
    else:
        small = rgb
    sy, sx = small.shape[0] / h, small.shape[1] / w
    work = _working_boxes(np.ascontiguousarray(small[:, :, ::-1]), mode, seed).reshape(-1, 4)
    side = np.minimum(work[:, 2] - work[:, 0], work[:, 3] - work[:, 1]) + 1
    work = _first_unique(work[side >= min_size]).astype(np.float64)
    x1, y1, x2, y2 = work.T
    boxes = np.stack([x1 / sx, y1 / sy, (x2 + 1) / sx - 1, (y2 + 1) / sy - 1], axis=1).reshape(-1, 4)
    boxes = np.round(boxes)
    # upscaling (s > 1): a one-pixel-wide box covers less than one original pixel; keep that pixel
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h - 1)
    boxes = _first_unique(boxes)  # upscaled: boxes one working pixel apart can round to one original box
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return np.ascontiguousarray(boxes, dtype=np.float32)


PROPOSAL_METHODS: dict[str, Callable[..., np.ndarray]] = {"selective_search": selective_search}
"""Proposer functions by name: ``fn(image, **params_without_method) -> (R, 4) float32``.
Add an entry to make another method nameable from a config's proposal dict."""

#: The proposer of the detectors fed proposals (R-CNN, SPP-net, Fast R-CNN) built without a ``proposer:``:
#: OpenCV's fast preset at 500 px width, 20 px minimum side, every box (``proposal_params``' other
#: defaults) -- about 3x cheaper than ``paper`` on the coco128-voc photos. The papers' VOC07 configs
#: (``configs/detection/*_voc07.yaml``) select ``mode: paper``; a model's ``proposer:`` dict overrides
#: this key by key.
DEFAULT_PROPOSER: dict[str, Any] = {"method": "selective_search", "mode": "fast"}


def proposal_params(method: str = "selective_search", mode: str = "fast", resize_width: int | None = 500,
                    min_size: float = 20, max_proposals: int | None = None, seed: int = 1) -> dict[str, Any]:
    """The canonical, JSON-able parameter dict of a proposal run (what a manifest stores).

    Args:
        method: a key of :data:`PROPOSAL_METHODS`.
        mode, resize_width, min_size, max_proposals, seed: as :func:`selective_search`.

    Returns:
        ``{"method", "mode", "resize_width", "min_size", "max_proposals", "seed"}``. A folder
        made before ``seed`` was a key (when ``min_size`` counted original pixels) no longer
        matches, so its boxes are not reused under the new meaning.

    Raises:
        InputError: an unknown mode (naming the key and the valid modes).
        ValueError: an unknown method or an out-of-range value (the message quotes it).
    """
    if method not in PROPOSAL_METHODS:
        raise ValueError(f"unknown proposal method {method!r}; known: {sorted(PROPOSAL_METHODS)}")
    _check_params(mode, resize_width, min_size, max_proposals, seed)
    return {"method": method, "mode": mode, "resize_width": resize_width, "min_size": min_size,
            "max_proposals": max_proposals, "seed": seed}


def propose(image: np.ndarray | torch.Tensor, params: dict[str, Any]) -> np.ndarray:
    """Runs the proposer that ``params["method"]`` names with the other entries as arguments.

    Args:
        image: as :func:`selective_search`.
        params: e.g. ``proposal_params(mode="fast")`` or the ``params`` of a store's manifest.

    Returns:
        (R, 4) float32 ``xyxy`` boxes in original-image pixels, ranked.
    """
    if "method" not in params:
        raise ValueError(f"proposal params need a 'method' (one of {sorted(PROPOSAL_METHODS)}), got {params!r}")
    method = params["method"]
    if method not in PROPOSAL_METHODS:
        raise ValueError(f"unknown proposal method {method!r}; known: {sorted(PROPOSAL_METHODS)}")
    fn = PROPOSAL_METHODS[method]
    kwargs = {k: v for k, v in params.items() if k != "method"}
    accepted = list(inspect.signature(fn).parameters)[1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"proposal method {method!r} takes {accepted}, not {unknown}")
    return fn(image, **kwargs)
