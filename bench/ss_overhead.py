"""Selective search: OpenCV's own call against our ``selective_search()`` on the same image (issue 24).

Per image and mode, interleaved (OpenCV, ours, OpenCV, ours, … so the load of other processes hits
both alike), after one warm-up round each:

* **OpenCV's call** on the already resized BGR image our function works on:
  ``createSelectiveSearchSegmentation`` + ``setBaseImage`` + ``switchToSelectiveSearchFast`` (or
  ``...Quality``) + ``process``. For ``paper`` there is no preset: the call is ``process()``
  configured with the paper's parts (``addImage`` HSV and Lab, ``addGraphSegmentation`` k = 50,
  100 with ``min_size = k``, sigma 0.8, ``addStrategy`` C+T+S+F and T+S+F), which groups and ranks
  OpenCV's way; our ``paper`` mode groups in Python to rank the paper's way
  (:mod:`visiontasks.detection.proposals.hierarchical_grouping`), so its row compares two
  implementations of the grouping, not a wrapper with what it wraps.
* **ours**: ``selective_search(rgb uint8 array, mode)`` with its defaults (500 px wide, 20 px
  minimum side), from the original-size RGB array to the final float32 boxes.

Overhead = ours / OpenCV - 1 on the minimum and the median call. The wrapper's own part is also
timed inside our calls (``_working_boxes``, the proposing itself, wrapped with time stamps): the
rest is resizing, the RGB → BGR copy, filtering, deduplication and mapping back, measured within
one call and so free of the load's noise between calls. OpenCV runs ``--cv-threads`` threads (1,
as ``tools/propose.py``'s workers). Figures are printed, never asserted.

    python bench/ss_overhead.py [--modes fast,quality,paper] [--reps 3] [--images A.jpg B.jpg]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the package re-exports the function under the module's name: fetch the module itself
ss_module = importlib.import_module("visiontasks.detection.proposals.selective_search")
from visiontasks.detection.proposals.hierarchical_grouping import (PAPER_COLOUR_SPACES, PAPER_KS,  # noqa: E402
                                                                   PAPER_SIGMA, _convert, paper_strategies)

ROOT = Path(__file__).resolve().parents[1]
JPEGS = ROOT.parent / "shared/data/coco128-voc/VOC2007/JPEGImages"
#: A 375×500 photo (no resizing at 500 px) and a 480×640 one (resized to 375×500).
IMAGES = (JPEGS / "000000000077.jpg", JPEGS / "000000000009.jpg")


def load_rgb(path: Path, index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``path``; seeded noise (375×500) where the file is absent."""
    if path.is_file():
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB")).copy()
    return np.random.default_rng(index).integers(0, 256, (375, 500, 3), dtype=np.uint8)


def working_bgr(rgb: np.ndarray, resize_width: int = 500) -> np.ndarray:
    """The image OpenCV sees inside ``selective_search``: resized as it resizes, BGR, contiguous."""
    import cv2

    h, w = rgb.shape[:2]
    if resize_width != w:
        interp = cv2.INTER_AREA if resize_width < w else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (resize_width, max(1, int(round(h * resize_width / w)))), interpolation=interp)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def opencv_call(bgr: np.ndarray, mode: str) -> Callable[[], object]:
    """OpenCV's own selective search on ``bgr``: a preset, or ``paper``'s configuration."""
    from cv2.ximgproc import segmentation as seg

    def preset() -> object:
        ss = seg.createSelectiveSearchSegmentation()
        ss.setBaseImage(bgr)
        ss.switchToSelectiveSearchFast() if mode == "fast" else ss.switchToSelectiveSearchQuality()
        return ss.process()

    def paper() -> object:
        ss = seg.createSelectiveSearchSegmentation()
        for space in PAPER_COLOUR_SPACES:
            ss.addImage(_convert(bgr, space))  # the paper mode's own colour spaces (released code's HSV)
        for k in PAPER_KS:
            ss.addGraphSegmentation(seg.createGraphSegmentation(sigma=PAPER_SIGMA, k=float(k), min_size=int(k)))
        for strategy in paper_strategies():
            ss.addStrategy(strategy)
        return ss.process()

    return paper if mode == "paper" else preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="fast,quality,paper")
    parser.add_argument("--reps", type=int, default=3, help="timed interleaved calls of each, per image and mode")
    parser.add_argument("--images", type=Path, nargs="+", default=list(IMAGES))
    parser.add_argument("--cv-threads", type=int, default=1)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(args.cv_threads)
    inner: list[float] = []
    original = ss_module._working_boxes

    def timed_working_boxes(*a, **k):
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            inner.append(time.perf_counter() - t0)

    ss_module._working_boxes = timed_working_boxes
    print(f"OpenCV {cv2.__version__}, cv2.setNumThreads({args.cv_threads}), reps={args.reps} (+1 warm-up)")
    for mode in args.modes.split(","):
        for index, path in enumerate(args.images):
            rgb = load_rgb(path, index)
            bgr = working_bgr(rgb)
            bare = opencv_call(bgr, mode)
            times: dict[str, list[float]] = {"opencv": [], "ours": []}
            wrapper: list[float] = []
            boxes = 0
            for rep in range(args.reps + 1):
                t0 = time.perf_counter()
                bare()
                t1 = time.perf_counter()
                inner.clear()
                boxes = len(ss_module.selective_search(rgb, mode=mode))
                t2 = time.perf_counter()
                if rep:
                    times["opencv"].append(t1 - t0)
                    times["ours"].append(t2 - t1)
                    wrapper.append(t2 - t1 - sum(inner))
            lo = {k: min(v) for k, v in times.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            own = statistics.median(wrapper)
            over = {k: 100 * (v["ours"] / v["opencv"] - 1) for k, v in (("min", lo), ("median", med))}
            print(f"{mode:>7s} {path.name} {rgb.shape[0]}x{rgb.shape[1]} -> {bgr.shape[0]}x{bgr.shape[1]}: "
                  f"opencv min {lo['opencv']:.3f} s median {med['opencv']:.3f} s | ours min {lo['ours']:.3f} s "
                  f"median {med['ours']:.3f} s ({boxes} boxes) | overhead min {over['min']:+.1f} % "
                  f"median {over['median']:+.1f} % | wrapper's own part {1000 * own:.1f} ms "
                  f"= {100 * own / med['ours']:.2f} %")


if __name__ == "__main__":
    main()
