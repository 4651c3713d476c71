"""The detection lineage side by side: test seconds per image, proposal time, speed-up over R-CNN, peak RSS.

Every row runs in its own spawned process (so peak RSS is that model's: build + inference) in
each precision of ``--precision`` (``fp32``, ``bf16`` or both, ``fp32,bf16``) as ``load_model()``
runs it: the model is wrapped in ``visiontasks.api.Predictor`` (``load_model``'s last step), so bf16
is that path exactly (conv/linear weights stored in bf16, the network under autocast, the parts'
outputs back in float32) and both run channels-last with small-map conv kernels chosen by
measurement (``visiontasks/conv_select.py``) — except fp32 VGG16 models, NCHW with NNPACK's Winograd
3×3 kernel (``visiontasks/winograd_conv.py``); ``--plain``: fp32, NCHW, oneDNN everywhere; with the same thread
count, on the same coco128-voc test photographs, random weights (latency does not depend on them), eval mode, score threshold 0.05. Proposals (selective search, fast mode,
R-CNN's 500 px resize) are computed once per image beforehand and timed separately: the model
rows exclude them, and the "selective search" row is their own cost — add it to every
proposal-fed model for its end-to-end time, as the papers' "s/img" columns do for R-CNN and
SPP-net (Fast R-CNN's paper reports both).

    python bench/lineage.py --images 20 --threads 2 [--slow-images 2] [--rows rcnn_alexnet,fast_rcnn_vgg16]
        [--precision fp32,bf16]
    python bench/lineage.py --reprint run1.json [run2.json ...]   # tables of saved --json runs, merged

"speed-up vs R-CNN VGG16" divides model times (proposals excluded, as Fast R-CNN's Table 4 compares
R-CNN, SPP-net and Fast R-CNN); "vs Faster R-CNN VGG16" divides end-to-end times (selective search
included), the comparison behind YOLO's 45 vs 7 fps; both divide by the reference row of the same
precision. With two precisions a second table sets each model's fp32 and bf16 times side by side.

R-CNN runs one CNN forward per proposal (~2,000 per image): with VGG16 that is ~30 TFLOP per
image, minutes per image on a CPU, so R-CNN rows use the first ``--slow-images`` images only (the
printed table says how many images each row saw). "CPU s/img" is the process's CPU time (all its
threads) per image: on a machine shared with other work it moves far less than the wall time.
Figures are printed, never asserted.
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


def _build(name: str, precision: str, plain: bool) -> torch.nn.Module:
    """The row's model with random weights, prepared as ``load_model(precision=...)`` prepares it."""
    from visiontasks import get_model

    registry_name, kwargs, _, _ = ROWS[name]
    torch.manual_seed(0)
    model = get_model(registry_name, num_classes=21, **kwargs).eval()
    if not plain:  # Predictor.__init__: bf16 casting + autocast hooks, then channels-last + conv_select
        from visiontasks.api import Predictor

        model = Predictor(model, "detection", [f"c{i}" for i in range(20)], precision=precision).model
    model.score_thresh = 0.05
    return model


def _row(name: str, precision: str, root: str, ids: list[str], proposals: str, threads: int, plain: bool,
         queue: mp.Queue) -> None:
    try:
        torch.set_num_threads(threads)
        from visiontasks.data import read_image
        from visiontasks.data.proposals import read_proposals

        model = _build(name, precision, plain)
        needs = bool(getattr(model, "needs_proposals", False))
        times, cpu, counts = [], [], []  # wall and CPU (all threads of this process) seconds per image
        for k, image_id in enumerate(ids):
            image = read_image(Path(root) / "JPEGImages" / f"{image_id}.jpg").float() / 255.0
            extra = {"proposals": [read_proposals(proposals, image_id)]} if needs else {}
            with torch.inference_mode():
                start, cpu_start = time.perf_counter(), time.process_time()
                model([image], **extra)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            counts.append(len(extra["proposals"][0]) if needs else 0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
        params = sum(p.numel() for p in model.parameters())
        queue.put({"name": name, "precision": precision, "seconds": times, "cpu_seconds": cpu, "rss_mib": rss,
                   "parameters": params, "proposals": float(np.mean(counts)) if needs else None})
    except Exception as exc:  # reported in the table, the other rows go on
        queue.put({"name": name, "precision": precision, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})


def _precisions(text: str, plain: bool) -> list[str]:
    """``--precision``'s comma-separated list, checked (exits with one line on a bad value)."""
    from visiontasks.precision import PRECISIONS

    wanted = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad or not wanted:
        sys.exit(f"error: --precision: {bad or text!r} not in {'|'.join(PRECISIONS)} (comma-separated)")
    if plain and wanted != ["fp32"]:
        sys.exit("error: --plain runs fp32 only (bf16 is load_model()'s path); drop --precision or --plain")
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="VOC-layout folder with a test split")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--slow-images", type=int, default=2, help="images for the R-CNN rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain", action="store_true",
                        help="NCHW, oneDNN for every conv (before the fast paths); default: load_model()'s fp32 path")
    parser.add_argument("--precision", default="fp32",
                        help="comma-separated: fp32, bf16 or fp32,bf16 (each row timed in each, as load_model runs it)")
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
    precisions = _precisions(args.precision, args.plain)
    ids = _read_ids(root, args.images)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(args.threads)
        ss = _proposals(root, ids, Path(tmp))
        results = []
        ctx = mp.get_context("spawn")
        for name in rows:
            slow = ROWS[name][2]
            for precision in precisions:
                queue = ctx.Queue()
                proc = ctx.Process(target=_row, args=(name, precision, str(root),
                                                      ids[: args.slow_images] if slow else ids, tmp,
                                                      args.threads, args.plain, queue))
                proc.start()
                res = queue.get()
                proc.join()
                results.append(res)
                brief = {k: v for k, v in res.items() if "seconds" not in k}
                brief.update({f"median_{k}": statistics.median(res[k]) for k in ("seconds", "cpu_seconds") if k in res})
                print(json.dumps(brief), file=sys.stderr, flush=True)
                if args.json:  # after every row, so that a run stopped part-way still leaves its rows
                    _write_json(args.json, ss, ids, args, results)
    _print_tables(results, ss, len(ids), args.threads, args.plain)


def _write_json(path: str, ss: list[float], ids: list[str], args: argparse.Namespace, results: list[dict]) -> None:
    """Writes the figures so far (``--reprint`` reads them)."""
    Path(path).write_text(json.dumps({"selective_search": ss, "images": len(ids), "threads": args.threads,
                                      "plain": args.plain, "rows": results}, indent=2))


def _print_tables(results: list[dict], ss: list[float], images: int, threads: int, plain: bool) -> None:
    """Prints the lineage table (one row per model and precision) and, with both, fp32 beside bf16."""
    from visiontasks.precision import cpu_bf16_supported

    ss_mean = statistics.mean(ss)
    path = "plain NCHW" if plain else "channels-last + conv_select (load_model's path)"
    print(f"\n{images} coco128-voc test photos, {threads} threads, {path}, torch {torch.__version__}, "
          f"native CPU bf16: {cpu_bf16_supported()}; selective search (fast, 500 px): {ss_mean:.2f} s/img "
          f"(median {statistics.median(ss):.2f})\n")

    def stat_of(name: str, precision: str, key: str = "seconds", stat=statistics.mean) -> float | None:
        return next((stat(r[key]) for r in results  # None: absent or failed
                     if r.get("name") == name and r.get("precision", "fp32") == precision and key in r), None)

    print("| model | precision | images | s/img (model) | s/img (+ proposals) | speed-up vs R-CNN VGG16 | "
          "vs Faster R-CNN VGG16 | CPU s/img (model) | peak RSS MiB | parameters | paper (GPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        paper, precision = ROWS[r["name"]][3], r.get("precision", "fp32")
        if "error" in r:
            print(f"| {r['name']} | {precision} | | {r['error']} | | | | | | | {paper} |")
            continue
        ref, frcnn = stat_of("rcnn_vgg16", precision), stat_of("faster_rcnn_vgg16", precision)
        mean = statistics.mean(r["seconds"])
        total = mean + ss_mean if r["proposals"] is not None else mean
        speed = f"{ref / mean:.0f}×" if ref else ""
        vs_faster = f"{frcnn / total:.2f}×" if frcnn else ""
        cpu = f"{statistics.mean(r['cpu_seconds']):.3f}" if "cpu_seconds" in r else ""
        print(f"| {r['name']} | {precision} | {len(r['seconds'])} | {mean:.3f} | {total:.3f} | {speed} | "
              f"{vs_faster} | {cpu} | {r['rss_mib']:.0f} | {r['parameters']:,} | {paper} |")
    names = list(dict.fromkeys(r["name"] for r in results))
    if {r.get("precision", "fp32") for r in results} >= {"fp32", "bf16"}:
        # medians: one image stalled by other work on a shared machine does not move them
        print("\n| model | fp32 median s/img | bf16 median s/img | fp32 / bf16 | fp32 / bf16 in median CPU s |\n"
              "|---|---|---|---|---|")
        med = statistics.median
        for name in names:
            fp32, bf16 = stat_of(name, "fp32", stat=med), stat_of(name, "bf16", stat=med)
            cpu32, cpu16 = stat_of(name, "fp32", "cpu_seconds", med), stat_of(name, "bf16", "cpu_seconds", med)
            cell = [f"{t:.3f}" if t is not None else "failed / not run" for t in (fp32, bf16)]
            ratio = f"{fp32 / bf16:.2f}×" if fp32 and bf16 else ""
            cpu_ratio = f"{cpu32 / cpu16:.2f}×" if cpu32 and cpu16 else ""
            print(f"| {name} | {cell[0]} | {cell[1]} | {ratio} | {cpu_ratio} |")


def reprint(paths: list[str]) -> None:
    """Prints the tables of one or more ``--json`` files (rows of later files replace earlier ones)."""
    merged: dict[tuple[str, str], dict] = {}
    first = json.loads(Path(paths[0]).read_text())
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            merged[(r["name"], r.get("precision", "fp32"))] = r
    _print_tables(list(merged.values()), first["selective_search"], first.get("images", 0),
                  first.get("threads", 0), first.get("plain", False))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reprint"]:  # python bench/lineage.py --reprint a.json [b.json ...]
        reprint(sys.argv[2:])
    else:
        main()
