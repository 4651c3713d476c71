"""Peak memory and time of ``tools/eval.py det`` on very large results files (issue 26).

VOC: writes a synthetic VOC-layout ground truth (``--images`` annotation XMLs of 1-4 objects of
``--classes`` classes, a ``test`` split) and ``--classes`` comp4 files of ``--per-class`` lines each
(10 million by default: 20 x 500,000), in py-faster-rcnn's format (``{:.3f}`` score, ``{:.1f}``
corners; half the detections jittered copies of a ground-truth box of their class, half random),
then runs ``tools/eval.py det`` on them in a fresh process and reports its peak resident set size
(``ru_maxrss`` from ``wait4``) and wall time, with the bytes per detection. ``--single`` puts all
the lines in one class file (a class-agnostic detector: the largest file is everything).

COCO: ``--coco N[,N...]`` writes a COCO instances json of the same ground truth and a results json of
N detections, and runs ``tools/eval.py det --metric coco`` on it, and, for comparison, pycocotools
alone (``COCO(gt).loadRes(file)`` then ``COCOeval`` evaluate and accumulate) in another fresh process;
pycocotools alone is skipped where the json needs more than the memory available (``COCO_BYTES_PER_FILE_BYTE``
times its size), and ``tools/eval.py`` then shows its one-line refusal.

Figures are printed, never asserted. The bench refuses to start a run that would need more than
the machine's ``MemAvailable`` (other people's processes share it).

    python bench/eval_large.py [--per-class 500000] [--classes 20] [--images 5000] [--errors] [--single]
    python bench/eval_large.py --coco 1000000,3000000 --skip-voc
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
W, H = 500, 375


def ground_truth(rng: np.random.Generator, images: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (G,), label (G,) 1..C, box (G, 4) xyxy 1-based inclusive)`` of 1-4 objects per image."""
    per = rng.integers(1, 5, images)
    image = np.repeat(np.arange(images), per)
    label = rng.integers(1, classes + 1, len(image))
    x0, y0 = rng.integers(1, W - 60, len(image)), rng.integers(1, H - 60, len(image))
    box = np.stack([x0, y0, x0 + rng.integers(20, 60, len(image)), y0 + rng.integers(20, 60, len(image))], 1)
    return image, label, box


def write_voc(root: Path, image: np.ndarray, label: np.ndarray, box: np.ndarray, names: list[str]) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(int(image.max()) + 1)]
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(i + "\n" for i in ids))
    objects: list[list[str]] = [[] for _ in ids]
    for i, c, b in zip(image.tolist(), label.tolist(), box.tolist()):
        objects[i].append(f"<object><name>{names[c - 1]}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                          f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")
    for i, objs in zip(ids, objects):
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size>{''.join(objs)}</annotation>")


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(D, width) ASCII digits of non-negative integers, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + 48).astype(np.uint8)


def detections(rng: np.random.Generator, n: int, c: int, gt: tuple, images: int) -> tuple[np.ndarray, ...]:
    """``(image, score in tenths of a thousandth, box in tenths of a pixel (n, 4))`` of class ``c``."""
    g_image, g_label, g_box = gt
    mine = np.flatnonzero(g_label == c)
    pick = mine[rng.integers(0, len(mine), n)] if len(mine) else np.zeros(n, np.int64)
    near = rng.random(n) < 0.5 if len(mine) else np.zeros(n, bool)
    image = np.where(near, g_image[pick], rng.integers(0, images, n))
    x0, y0 = rng.integers(10, (W - 80) * 10, n), rng.integers(10, (H - 80) * 10, n)
    random_box = np.stack([x0, y0, x0 + rng.integers(100, 700, n), y0 + rng.integers(100, 700, n)], 1)
    jitter = g_box[pick] * 10 + rng.integers(-40, 41, (n, 4))
    box = np.where(near[:, None], jitter, random_box).clip(10, 9999)
    box[:, 2:] = np.maximum(box[:, 2:], box[:, :2])
    return image, rng.integers(0, 1000, n), box


def write_comp4(path: Path, image: np.ndarray, score: np.ndarray, box: np.ndarray) -> None:
    """Lines ``IIIIII 0.SSS XXX.X YYY.Y XXX.X YYY.Y`` built as one byte array (35 bytes a line)."""
    parts = [_digits(image, 6), np.full((len(image), 3), [32, 48, 46], np.uint8), _digits(score, 3)]
    for k in range(4):
        v = _digits(box[:, k], 4)
        parts += [np.full((len(image), 1), 32, np.uint8), v[:, :3], np.full((len(image), 1), 46, np.uint8), v[:, 3:]]
    parts.append(np.full((len(image), 1), 10, np.uint8))
    path.write_bytes(np.concatenate(parts, axis=1).tobytes())


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, float, float, str]:
    """``(exit code, peak RSS MiB, seconds, last output line)`` of a fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t, (lines[-1] if lines else "")[:300]


def available_gib() -> float:
    from visiontasks.evaluation.memory import available_memory
    found = available_memory()
    return found[0] / 2**30 if found else float("inf")


def bench_voc(args: argparse.Namespace, tmp: Path, gt: tuple, names: list[str]) -> None:
    rng = np.random.default_rng(1)
    det = tmp / "det"
    det.mkdir()
    total, t = args.per_class * args.classes, time.perf_counter()
    if args.single:
        chunks = [(1, total)]
    else:
        chunks = [(c, args.per_class) for c in range(1, args.classes + 1)]
    for c, n in chunks:
        image, score, box = detections(rng, n, c, gt, args.images)
        write_comp4(det / f"comp4_det_test_{names[c - 1]}.txt", image, score, box)
    size = sum(p.stat().st_size for p in det.iterdir())
    print(f"wrote {total:,} detection lines in {len(chunks)} file(s), {size / 2**20:.0f} MiB, in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    cmd = [sys.executable, str(REPO / "tools" / "eval.py"), "det", "--root", str(tmp / "voc"), "--split", "test",
           "--detections", str(det), "--classes", *names, "--no-cache", *(["--errors"] if args.errors else [])]
    print(f"MemAvailable before: {available_gib():.1f} GiB", flush=True)
    code, peak, secs, last = run(cmd)
    print(f"tools/eval.py det{' --errors' if args.errors else ''} on {total:,} detections: exit {code}, peak RSS "
          f"{peak:.0f} MiB ({peak * 2**20 / total:.0f} bytes per detection, all of the process), {secs:.1f} s; "
          f"last line: {last}", flush=True)
    shutil.rmtree(det)


def bench_coco(n: int, tmp: Path, gt: tuple, names: list[str], images: int) -> None:
    g_image, g_label, g_box = gt
    gt_file, res_file = tmp / "gt.json", tmp / f"res_{n}.json"
    if not gt_file.exists():
        anns = [{"id": k + 1, "image_id": int(i) + 1, "category_id": int(c),
                 "bbox": [float(b[0] - 1), float(b[1] - 1), float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)],
                 "area": float((b[2] - b[0] + 1) * (b[3] - b[1] + 1)), "iscrowd": 0}
                for k, (i, c, b) in enumerate(zip(g_image, g_label, g_box))]
        gt_file.write_text(json.dumps({"images": [{"id": i + 1, "width": W, "height": H, "file_name": f"{i:06d}.jpg"}
                                                  for i in range(images)], "annotations": anns,
                                       "categories": [{"id": c + 1, "name": nm} for c, nm in enumerate(names)]}))
    rng = np.random.default_rng(2)
    label = rng.integers(1, len(names) + 1, n)
    with open(res_file, "w", encoding="ascii") as f:
        f.write("[")
        for start in range(0, n, 100_000):
            parts = []
            for c in np.unique(label[start:start + 100_000]):
                k = int((label[start:start + 100_000] == c).sum())
                image, score, box = detections(rng, k, int(c), gt, images)
                for i, s, b in zip(image.tolist(), score.tolist(), box.tolist()):
                    parts.append(f'{{"image_id":{i + 1},"category_id":{int(c)},"bbox":[{b[0] / 10:.1f},'
                                 f'{b[1] / 10:.1f},{(b[2] - b[0]) / 10:.1f},{(b[3] - b[1]) / 10:.1f}],'
                                 f'"score":{s / 1000:.3f}}}')
            f.write(("," if start else "") + ",".join(parts))
        f.write("]")
    size = res_file.stat().st_size
    print(f"COCO results json of {n:,} detections: {size / 2**20:.0f} MiB; MemAvailable {available_gib():.1f} GiB",
          flush=True)
    plain = ("import sys, contextlib, io\nfrom pycocotools.coco import COCO\n"
             "from pycocotools.cocoeval import COCOeval\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2]); e = COCOeval(gt, dt, 'bbox')\n"
             "    e.evaluate(); e.accumulate()\n"
             "e.summarize()\n")
    from visiontasks.evaluation.coco_io import COCO_BYTES_PER_FILE_BYTE
    jobs = []
    if available_gib() * 2**30 < COCO_BYTES_PER_FILE_BYTE * size:  # tools/eval.py refuses; pycocotools would not
        print(f"  pycocotools alone skipped: about {COCO_BYTES_PER_FILE_BYTE * size / 2**30:.1f} GiB needed, more "
              "than is available", flush=True)
    else:
        jobs.append(("pycocotools alone (loadRes, evaluate, accumulate)", [sys.executable, "-c", plain,
                                                                           str(gt_file), str(res_file)]))
    jobs.append(("tools/eval.py det --metric coco", [sys.executable, str(REPO / "tools" / "eval.py"), "det", "--metric",
                                                     "coco", "--annotations", str(gt_file), "--detections",
                                                     str(res_file)]))
    for what, cmd in jobs:
        code, peak, secs, last = run(cmd)
        print(f"  {what}: exit {code}, peak RSS {peak:.0f} MiB ({peak * 2**20 / n:.0f} bytes per detection, "
              f"{peak * 2**20 / size:.1f}x the file), {secs:.1f} s; last line: {last}", flush=True)
    res_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=500_000, help="lines per class file")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--errors", action="store_true", help="run eval.py det --errors (all classes at once)")
    parser.add_argument("--single", action="store_true", help="all detections in one class file")
    parser.add_argument("--coco", default="", help="comma-separated detection counts for the COCO json runs")
    parser.add_argument("--skip-voc", action="store_true")
    args = parser.parse_args()
    names = [f"class{c:02d}" for c in range(1, args.classes + 1)]
    rng = np.random.default_rng(0)
    gt = ground_truth(rng, args.images, args.classes)
    tmp = Path(tempfile.mkdtemp(prefix="eval_large_"))
    try:
        write_voc(tmp / "voc", *gt, names)
        print(f"ground truth: {args.images} images, {len(gt[0])} objects, {args.classes} classes; "
              f"{os.cpu_count()} CPUs seen (shared with other jobs)", flush=True)
        if not args.skip_voc:
            bench_voc(args, tmp, gt, names)
        for n in [int(v) for v in args.coco.split(",") if v]:
            bench_coco(n, tmp, gt, names, args.images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
