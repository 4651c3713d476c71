"""DeconvNet's instance-wise inference (Noh, Hong & Han, ICCV 2015, §3.3 and §4.2).

The paper runs the network on object proposals instead of the whole image and puts the
proposals' score maps back together. What the released code does
(HyeonwooNoh/DeconvNet ``inference/generate_EDeconvNet_CRF_results.m``, cited as ``gen.m``):

1. **Proposals.** EdgeBoxes, about 2000 per image, ranked by objectness; the windows are cached
   already enlarged (``gen.m`` l. 73-75 ``boxes_padded``; the paper enlarges ×1.2). We use our
   selective search (:func:`visiontasks.detection.proposals.selective_search.propose`, fast mode,
   2000 boxes), ranked by its own order since it has no objectness score, and enlarge each box
   ×1.2 about its centre here (:func:`enlarge_windows`).
2. **Top N.** Windows whose shorter side is below 112 pixels are skipped (``gen.m`` l. 84) and the
   first 50 others are used (``run_demo.m`` l. 27 ``max_proposal_num = 50``, ``gen.m`` l. 97).
3. **A pass per window.** The image is zero-padded (black) so that windows may reach outside it
   (``gen.m`` l. 56-62), each window is cropped and resized to 224×224 — the inference size,
   ``run_demo.m`` l. 28 ``im_sz = 224`` and ``util/preprocess_image_bb.m`` l. 6-7; 250×250 is
   the training resize before the random 224 crop — and passed through the network.
4. **Aggregation by pixel-wise max.** The raw score map (the deploy net ends at ``seg-score``,
   no softmax, ``model/DeconvNet/DeconvNet_inference_deploy.prototxt`` l. 379-384) is resized
   bilinearly to the window's size (``gen.m`` l. 90) and merged into a full-image map by
   ``max`` (``gen.m`` l. 93-94), the paper's Eq. (1). The map starts at zero (``gen.m`` l. 52),
   so a pixel no window covers scores 0 for every class and the argmax (first maximum) gives
   **background**; negative scores are floored at 0 likewise. Parts of a window outside the image
   are dropped (``gen.m`` l. 105 crops the padded map back to the image).
5. **Class-conditional map.** The paper applies a softmax to the aggregated map (§3.3); the
   argmax is the same with or without it. The map returned here is the aggregated score
   (``softmax`` of it is the paper's class-conditional probability map).

Shape shorthand: K classes (background included), H×W image, N windows, S the network input
side (224), h_i×w_i window ``i``'s size in pixels.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "enlarge_windows", "select_windows", "window_slices", "crop_windows", "paste_max", "aggregate_windows",
    "selective_search_proposer", "InstanceWiseInference", "INSTANCE_DEFAULTS",
]

#: The paper's / released code's settings (see the module docstring for where each comes from).
INSTANCE_DEFAULTS: dict[str, Any] = {"top_n": 50, "enlarge": 1.2, "min_side": 112, "input_size": 224,
                                     "num_proposals": 2000}

Proposer = Callable[[torch.Tensor], Any]  # (3, H, W) float image in [0, 1] -> (R, 4) xyxy boxes, ranked
_PROPOSE_LOCK = threading.Lock()  # OpenCV's presets draw from the process-global rand(): one call at a time


def enlarge_windows(boxes: torch.Tensor, factor: float = 1.2) -> torch.Tensor:
    """Scales inclusive-corner boxes about their centres to whole-pixel windows.

    A box ``x1..x2`` (``x2 - x1 + 1`` pixels wide) becomes ``round(width · factor)`` pixels wide
    with the same centre, rounded to whole pixels (halves up). Windows may leave the image.

    Args:
        boxes: (N, 4) xyxy, inclusive 0-based corners (as selective search returns them).
        factor: the enlargement (the paper: 1.2).

    Returns:
        (N, 4) int64 inclusive windows ``x1, y1, x2, y2``.
    """
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    out = []
    for lo, hi in ((b[:, 0], b[:, 2]), (b[:, 1], b[:, 3])):
        side = torch.floor((hi - lo + 1) * factor + 0.5).clamp(min=1)
        start = torch.floor((lo + hi) / 2 - (side - 1) / 2 + 0.5)
        out.append((start, start + side - 1))
    (x1, x2), (y1, y2) = out
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.int64)


def select_windows(proposals: torch.Tensor, top_n: int = 50, enlarge: float = 1.2,
                   min_side: int = 112) -> torch.Tensor:
    """The windows the network sees: proposals enlarged, small ones skipped, the first ``top_n`` kept.

    Args:
        proposals: (R, 4) xyxy inclusive boxes in rank order.
        top_n: how many windows to keep (the released code: 50).
        enlarge: see :func:`enlarge_windows`.
        min_side: skip windows whose shorter side (after enlarging) is below this many pixels
            (the released code: 112).

    Returns:
        (N, 4) int64 inclusive windows, N <= top_n, in the proposals' order.
    """
    windows = enlarge_windows(proposals, enlarge)
    side = torch.minimum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1]) + 1
    return windows[side >= min_side][:top_n]


def window_slices(window: Sequence[int], height: int, width: int) -> tuple[slice, slice, slice, slice] | None:
    """(image rows, image cols, window rows, window cols) of an inclusive window's part inside an H×W image, or None."""
    x1, y1, x2, y2 = (int(v) for v in window)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width - 1), min(y2, height - 1)
    if ix1 > ix2 or iy1 > iy2:
        return None
    return (slice(iy1, iy2 + 1), slice(ix1, ix2 + 1),
            slice(iy1 - y1, iy2 - y1 + 1), slice(ix1 - x1, ix2 - x1 + 1))


def crop_windows(image: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Crops each window (black outside the image) and resizes it bilinearly to ``size``×``size``.

    Args:
        image: (3, H, W) float in [0, 1].
        windows: (N, 4) int64 inclusive windows.
        size: S, the network input side.

    Returns:
        (N, 3, S, S) float.
    """
    _, h, w = image.shape
    crops = []
    for window in windows.tolist():
        x1, y1, x2, y2 = window
        canvas = image.new_zeros((image.shape[0], y2 - y1 + 1, x2 - x1 + 1))
        parts = window_slices(window, h, w)
        if parts is not None:
            rows, cols, wrows, wcols = parts
            canvas[:, wrows, wcols] = image[:, rows, cols]
        crops.append(F.interpolate(canvas[None], size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=True)[0])
    return torch.stack(crops) if crops else image.new_zeros((0, image.shape[0], size, size))


def paste_max(maps: Sequence[torch.Tensor], windows: torch.Tensor, image_size: tuple[int, int],
              base: torch.Tensor | None = None) -> torch.Tensor:
    """Merges per-window class maps into a full-image map by pixel-wise maximum (paper Eq. 1).

    Args:
        maps: N maps, map ``i`` of shape (K, h_i, w_i) — already at its window's size.
        windows: (N, 4) int64 inclusive windows (h_i = y2 - y1 + 1, w_i = x2 - x1 + 1); parts
            outside the image are dropped.
        image_size: (H, W).
        base: (K, H, W) map to merge into (modified); default zeros, as the released code starts.

    Returns:
        (K, H, W): ``max(base, every window's map)`` at each pixel; ``base`` where no window lies.
    """
    h, w = image_size
    if base is None:
        if not len(maps):
            raise ValueError("paste_max needs at least one map or a base (the number of classes)")
        base = maps[0].new_zeros((maps[0].shape[0], h, w))
    for m, window in zip(maps, windows.tolist()):
        x1, y1, x2, y2 = window
        if tuple(m.shape[-2:]) != (y2 - y1 + 1, x2 - x1 + 1):
            raise ValueError(f"map of shape {tuple(m.shape)} does not fit window {window} "
                             f"({y2 - y1 + 1}×{x2 - x1 + 1})")
        parts = window_slices(window, h, w)
        if parts is None:
            continue
        rows, cols, wrows, wcols = parts
        base[:, rows, cols] = torch.maximum(base[:, rows, cols], m[:, wrows, wcols])
    return base


def aggregate_windows(network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                      windows: torch.Tensor, num_classes: int, input_size: int = 224,
                      batch_size: int = 8) -> torch.Tensor:
    """One network pass per window, each map resized to its window and merged by max.

    Args:
        network: (B, 3, S, S) images in [0, 1] -> (B, K, S, S) scores.
        image: (3, H, W) float in [0, 1].
        windows: (N, 4) int64 inclusive windows.
        num_classes: K.
        input_size: S (the released code: 224).
        batch_size: windows per network call (BatchNorm is in eval mode: the batch does not matter).

    Returns:
        (K, H, W) aggregated scores, 0 where no window lies (background after the argmax).
    """
    h, w = image.shape[-2:]
    base = image.new_zeros((num_classes, h, w), dtype=torch.float32)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        scores = network(crop_windows(image, chunk, input_size)).float()
        maps = [F.interpolate(s[None], size=(y2 - y1 + 1, x2 - x1 + 1), mode="bilinear", align_corners=False)[0]
                for s, (x1, y1, x2, y2) in zip(scores, chunk.tolist())]
        paste_max(maps, chunk, (h, w), base)
    return base


def selective_search_proposer(num_proposals: int = 2000, mode: str = "fast", **params: Any) -> Proposer:
    """Our stand-in for EdgeBoxes: selective search through its public ``propose`` function.

    The detection package is imported when the proposer first runs, not when this module loads
    (docs/ARCHITECTURE.md: the segmentation package does not depend on detection code).

    Args:
        num_proposals: ``max_proposals`` (the paper: about 2000 EdgeBoxes).
        mode: selective search mode ("fast", "quality", "paper").
        **params: other ``proposal_params`` keys (``resize_width``, ``min_size``, ``seed``).

    Returns:
        ``proposer(image (3, H, W)) -> (R, 4) float32 xyxy`` ranked boxes.
    """
    def proposer(image: torch.Tensor) -> np.ndarray:
        from visiontasks.detection.proposals.selective_search import propose, proposal_params

        args = proposal_params(mode=mode, max_proposals=num_proposals, **params)
        with _PROPOSE_LOCK:
            return propose(image.detach().cpu(), args)

    return proposer


class InstanceWiseInference:
    """Proposals → windows → a pass per window → max-aggregated full-image scores.

    Args:
        proposer: ``proposer(image (3, H, W)) -> (R, 4)`` ranked xyxy boxes; default
            :func:`selective_search_proposer` with ``num_proposals``.
        top_n, enlarge, min_side, input_size: see :func:`select_windows` / :func:`aggregate_windows`
            (defaults :data:`INSTANCE_DEFAULTS`, the released code's).
        num_proposals: proposals asked of the default proposer.
        batch_size: windows per network call.
    """

    def __init__(self, proposer: Proposer | None = None, top_n: int = 50, enlarge: float = 1.2,
                 min_side: int = 112, input_size: int = 224, num_proposals: int = 2000,
                 batch_size: int = 8) -> None:
        for key, value in (("top_n", top_n), ("min_side", min_side), ("input_size", input_size),
                           ("num_proposals", num_proposals), ("batch_size", batch_size)):
            if int(value) != value or value < (0 if key == "min_side" else 1):
                raise ValueError(f"instance-wise inference: {key} must be a positive integer, got {value!r}")
        if not enlarge > 0:
            raise ValueError(f"instance-wise inference: enlarge must be > 0, got {enlarge!r}")
        self.proposer = proposer or selective_search_proposer(int(num_proposals))
        self.top_n, self.enlarge, self.min_side = int(top_n), float(enlarge), int(min_side)
        self.input_size, self.batch_size = int(input_size), int(batch_size)

    def windows(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 4) int64 windows of ``image`` (3, H, W): the proposer's boxes through :func:`select_windows`."""
        boxes = torch.as_tensor(np.asarray(self.proposer(image)), dtype=torch.float32).reshape(-1, 4)
        return select_windows(boxes, self.top_n, self.enlarge, self.min_side)

    def __call__(self, network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                 num_classes: int) -> torch.Tensor:
        """(K, H, W) aggregated scores of ``image`` (3, H, W) in [0, 1]; see :func:`aggregate_windows`."""
        return aggregate_windows(network, image, self.windows(image), num_classes, self.input_size,
                                 self.batch_size)
