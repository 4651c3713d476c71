"""The detection lineage side by side: test seconds per image, proposal time, speed-up over R-CNN, peak RSS.

Every row runs in its own spawned process (so peak RSS is that model's: build + inference) in
fp32 as ``load_model()`` runs it (channels-last, small-map conv kernels chosen by measurement, see
``visiontasks/conv_select.py``; ``--plain`` for NCHW and oneDNN everywhere), with the same thread
count, on the same coco128-voc test photographs, random weights (latency does not depend on them), eval mode, score threshold 0.05. Proposals (selective search, fast mode,
R-CNN's 500 px resize) are computed once per image beforehand and timed separately: the model
rows exclude them, and the "selective search" row is their own cost — add it to every
proposal-fed model for its end-to-end time, as the papers' "s/img" columns do for R-CNN and
SPP-net (Fast R-CNN's paper reports both).

    python bench/lineage.py --images 20 --threads 2 [--slow-images 2] [--rows rcnn_alexnet,fast_rcnn_vgg16]

"speed-up vs R-CNN VGG16" divides model times (proposals excluded, as Fast R-CNN's Table 4 compares
R-CNN, SPP-net and Fast R-CNN); "vs Faster R-CNN VGG16" divides end-to-end times (selective search
included), the comparison behind YOLO's 45 vs 7 fps.

R-CNN runs one CNN forward per proposal (~2,000 per image): with VGG16 that is ~30 TFLOP per
image, minutes per image on a CPU, so R-CNN rows use the first ``--slow-images`` images only (the
printed table says how many images each row saw). Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007"

#: name → (registry name, builder kwargs, slow?, paper's s/img on a GPU for the same network).
ROWS: dict[str, tuple[str, dict, bool, str]] = {
    "rcnn_alexnet": ("rcnn", {"backbone": "alexnet"}, True, "13 s GPU / 53 s CPU (R-CNN §2.2)"),
    "rcnn_vgg16": ("rcnn", {"backbone": "vgg16"}, True, "47 s"),
    "spp_net_alexnet_1scale": ("spp_net", {"backbone": "alexnet", "scales": [688]}, False,
                               "24–102× faster than R-CNN (ZF-5)"),
    "spp_net_alexnet_5scales": ("spp_net", {"backbone": "alexnet", "scales": [480, 576, 688, 864, 1200]}, False,
                                "24–102× faster than R-CNN (ZF-5)"),
    "fast_rcnn_vgg16": ("fast_rcnn", {"backbone": "vgg16"}, False, "0.32 s, 146× R-CNN"),
    "fast_rcnn_vgg16_svd": ("fast_rcnn", {"backbone": "vgg16", "fc_svd_ranks": [1024, 256]}, False, "213× R-CNN"),
    "faster_rcnn_vgg16": ("faster_rcnn", {"backbone": "vgg16"}, False, "0.2 s incl. proposals (5 fps)"),
    "faster_rcnn_alexnet": ("faster_rcnn", {"backbone": "alexnet"}, False, ""),
    "fast_rcnn_small": ("fast_rcnn", {"backbone": "small"}, False, ""),
    "spp_net_small": ("spp_net", {"backbone": "small", "scales": [688]}, False, ""),
    "faster_rcnn_small": ("faster_rcnn", {"backbone": "small"}, False, ""),
    "yolov1": ("yolov1", {}, False, "0.022 s (45 fps, Titan X)"),
    "fast_yolo": ("fast_yolo", {}, False, "0.0065 s (155 fps)"),
    "yolov1_vgg16": ("yolov1", {"backbone": "vgg16"}, False, "0.048 s (21 fps, YOLO VGG-16)"),
    "yolov1_small": ("yolov1", {"backbone": "small", "input_size": 160, "head": "conv"}, False, ""),
}


def _read_ids(root: Path, n: int) -> list[str]:
    ids = [line.split()[0] for line in (root / "ImageSets" / "Main" / "test.txt").read_text().splitlines() if line]
    return ids[:n]


def _proposals(root: Path, ids: list[str], out: Path) -> list[float]:
    """Selective search per image into ``out``; returns seconds per image (the call alone)."""
    from visiontasks.data import read_image
    from visiontasks.data.proposals import write_proposals
    from visiontasks.detection.proposals import proposal_params, propose

    params = proposal_params(mode="fast")
    seconds = []
    for image_id in ids:
        rgb = read_image(root / "JPEGImages" / f"{image_id}.jpg").permute(1, 2, 0).numpy()
        start = time.perf_counter()
        boxes = propose(rgb, params)
        seconds.append(time.perf_counter() - start)
        write_proposals(out, image_id, boxes)
    return seconds


def _row(name: str, root: str, ids: list[str], proposals: str, threads: int, plain: bool, queue: mp.Queue) -> None:
    try:
        torch.set_num_threads(threads)
        from visiontasks import get_model
        from visiontasks.data import read_image
        from visiontasks.data.proposals import read_proposals

        registry_name, kwargs, _, _ = ROWS[name]
        torch.manual_seed(0)
        model = get_model(registry_name, num_classes=21, **kwargs).eval()
        if not plain:  # the fp32 path load_model() runs
            from visiontasks.conv_select import inference_layout
            inference_layout(model)
        model.score_thresh = 0.05
        needs = bool(getattr(model, "needs_proposals", False))
        times, counts = [], []
        for k, image_id in enumerate(ids):
            image = read_image(Path(root) / "JPEGImages" / f"{image_id}.jpg").float() / 255.0
            extra = {"proposals": [read_proposals(proposals, image_id)]} if needs else {}
            with torch.inference_mode():
                start = time.perf_counter()
                model([image], **extra)
                times.append(time.perf_counter() - start)
            counts.append(len(extra["proposals"][0]) if needs else 0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
        params = sum(p.numel() for p in model.parameters())
        queue.put({"name": name, "seconds": times, "rss_mib": rss, "parameters": params,
                   "proposals": float(np.mean(counts)) if needs else None})
    except Exception as exc:  # reported in the table, the other rows go on
        queue.put({"name": name, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="VOC-layout folder with a test split")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--slow-images", type=int, default=2, help="images for the R-CNN rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain", action="store_true",
                        help="NCHW, oneDNN for every conv (before the fast paths); default: load_model()'s fp32 path")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        sys.exit(f"error: {root}: not found (coco128-voc lives in ../shared/data)")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"error: unknown rows {unknown}; known: {list(ROWS)}")
    ids = _read_ids(root, args.images)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(args.threads)
        ss = _proposals(root, ids, Path(tmp))
        results = []
        ctx = mp.get_context("spawn")
        for name in rows:
            slow = ROWS[name][2]
            queue = ctx.Queue()
            proc = ctx.Process(target=_row, args=(name, str(root), ids[: args.slow_images] if slow else ids, tmp,
                                                  args.threads, args.plain, queue))
            proc.start()
            res = queue.get()
            proc.join()
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "seconds"}), file=sys.stderr)
    ss_mean = statistics.mean(ss)
    path = "plain NCHW" if args.plain else "fp32 channels-last + conv_select (load_model's path)"
    print(f"\n{len(ids)} coco128-voc test photos, {args.threads} threads, {path}, torch {torch.__version__}; "
          f"selective search (fast, 500 px): {ss_mean:.2f} s/img (median {statistics.median(ss):.2f})\n")
    def mean_of(name: str) -> float | None:  # a reference row's seconds per image, None when absent or failed
        return next((statistics.mean(r["seconds"]) for r in results if r.get("name") == name and "seconds" in r),
                    None)

    ref, frcnn = mean_of("rcnn_vgg16"), mean_of("faster_rcnn_vgg16")
    print("| model | images | s/img (model) | s/img (+ proposals) | speed-up vs R-CNN VGG16 | "
          "vs Faster R-CNN VGG16 | peak RSS MiB | parameters | paper (GPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        paper = ROWS[r["name"]][3]
        if "error" in r:
            print(f"| {r['name']} | | {r['error']} | | | | | | {paper} |")
            continue
        mean = statistics.mean(r["seconds"])
        total = mean + ss_mean if r["proposals"] is not None else mean
        speed = f"{ref / mean:.0f}×" if ref else ""
        vs_faster = f"{frcnn / total:.2f}×" if frcnn else ""
        print(f"| {r['name']} | {len(r['seconds'])} | {mean:.3f} | {total:.3f} | {speed} | {vs_faster} | "
              f"{r['rss_mib']:.0f} | {r['parameters']:,} | {paper} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"selective_search": ss, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
