"""Times eval_detection_voc against the per-detection voc_eval loop on a VOC07-test-sized workload.

    python bench/eval_speed.py            # 4,952 images, ~12k objects, ~500k detections
    python bench/eval_speed.py --quick    # a tenth of that

The workload is synthetic and seeded: ground truth scattered over 20 classes (about 15 % difficult),
detections = noisy copies of the ground truth (duplicates included, higher scores) plus random
boxes of random classes. Both implementations must give the same mAP (to 1e-12).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference_voc_eval import voc_eval_reference  # noqa: E402

from visiontasks.evaluation import eval_detection_voc  # noqa: E402


def make_workload(num_images: int, dets_per_image: int, num_classes: int = 20, seed: int = 0):
    """Per-image lists (pred boxes, labels, scores, gt boxes, labels, difficult) as VOC07 test roughly looks."""
    rng = np.random.default_rng(seed)
    pb, pl, ps, gb, gl, gd = [], [], [], [], [], []
    for _ in range(num_images):
        w, h = rng.integers(300, 501, 2)
        n = 1 + rng.poisson(1.45)
        xy = rng.uniform(0, [w * 0.8, h * 0.8], (n, 2))
        size = rng.uniform(16, [w * 0.6, h * 0.6], (n, 2))
        g = np.round(np.concatenate([xy, np.minimum(xy + size, [w - 1, h - 1])], 1))
        labels = rng.integers(1, num_classes + 1, n)
        copies = rng.integers(2, 9, n)
        noisy = np.repeat(g, copies, 0) + rng.normal(0, 0.08, (int(copies.sum()), 1)) * np.repeat(
            np.concatenate([size, size], 1), copies, 0)
        k = max(dets_per_image - len(noisy), 0)
        rxy = rng.uniform(0, [w, h], (k, 2))
        rand = np.concatenate([rxy, rxy + rng.uniform(8, [w / 2, h / 2], (k, 2))], 1)
        pb.append(np.concatenate([noisy, rand]))
        pl.append(np.concatenate([np.repeat(labels, copies), rng.integers(1, num_classes + 1, k)]))
        ps.append(np.concatenate([rng.beta(5, 2, len(noisy)), rng.beta(1, 5, k)]))
        gb.append(g)
        gl.append(labels)
        gd.append(rng.random(n) < 0.15)
    return pb, pl, ps, gb, gl, gd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="495 images instead of 4,952")
    parser.add_argument("--metric", default="voc07", choices=["voc07", "voc12"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    num_images = 495 if args.quick else 4952
    work = make_workload(num_images, dets_per_image=101, seed=args.seed)
    n_gt = sum(len(g) for g in work[3])
    n_diff = sum(int(d.sum()) for d in work[5])
    n_det = sum(len(p) for p in work[0])
    print(f"workload: {num_images} images, {n_gt} objects ({n_diff} difficult), {n_det} detections, "
          f"20 classes, metric {args.metric}")

    times = []
    for _ in range(3):
        start = time.perf_counter()
        ours = eval_detection_voc(*work, num_classes=20, metric=args.metric)
        times.append(time.perf_counter() - start)
    ours_s = min(times)
    start = time.perf_counter()
    ref = voc_eval_reference(*work, num_classes=20, use_07_metric=args.metric == "voc07", devkit=True)
    ref_s = time.perf_counter() - start
    ref_map = float(np.nanmean(ref))
    same = bool(np.allclose(ours["ap"], ref, rtol=0, atol=1e-12, equal_nan=True))
    print(f"eval_detection_voc: {ours_s:.3f} s (best of 3)   mAP {ours['map']:.12f}")
    print(f"voc_eval loop:      {ref_s:.3f} s              mAP {ref_map:.12f}")
    print(f"speed-up: {ref_s / ours_s:.1f}x   per-class APs agree to 1e-12: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
