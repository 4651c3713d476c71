"""One table for the segmentation val masks of real photographs, every row scored by ``tools/eval.py seg``.

Rows: each classic baseline (``--method``) scored as foreground/background and with
``--oracle-labels`` (each region takes its majority ground-truth class), then every trained
checkpoint given with ``--checkpoint NAME=PATH``. All rows go through the same evaluator
(``tools/eval.py seg``, one confusion matrix over the whole split, 255 ignored), so the numbers
are comparable; the wall time of each evaluation (start-up included) is reported beside it.

Note the two kinds of mIoU: the fg/bg column is a mean over 2 classes (background, foreground),
the 21-class column over the classes present in the split (background + the 20 VOC classes that
have pixels). A checkpoint is scored over 21 classes only; its fg/bg figure is not computed here.

    python bench/seg_real_photos.py [--root ../shared/data/coco128-voc/VOC2007] [--split val] \
        [--methods otsu adaptive ...] [--checkpoint "small FCN=runs/x/checkpoint_last.pt" ...] \
        [--work DIR] [--markdown table.md]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007"
METHODS = ("otsu", "adaptive", "region_growing", "split_merge", "edges")


def run_eval(args: list[str], out_json: Path) -> tuple[dict, float]:
    """Run ``tools/eval.py seg`` with ``args`` and read its result JSON.

    Args:
        args: arguments after ``seg`` (``--root``/``--split`` included).
        out_json: where the evaluator writes its JSON (``--out``).

    Returns:
        The result dict (``mIoU``, ``pixel_accuracy``, ``per_class`` …) and the wall time in seconds.
    """
    cmd = [sys.executable, str(REPO / "tools" / "eval.py"), "seg", *args, "--out", str(out_json)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(out_json.read_text()), wall


def fmt(value: float | None) -> str:
    """A fraction from the evaluator's JSON as a percentage with 2 decimals, ``n/a`` for None."""
    return "n/a" if value is None else f"{100.0 * float(value):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a trained segmenter to score (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_seg_real_photos"),
                        help="folder for the per-row result JSONs")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if not (args.root / "SegmentationClass").is_dir():
        print(f"skip: {args.root} has no SegmentationClass/ (../shared is absent in a user's clone)")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    base = ["--root", str(args.root), "--split", args.split]
    lines = ["| row | fg/bg mIoU | 21-class mIoU | pixel acc. (21-class) | eval wall s |",
             "|---|---|---|---|---|"]
    for method in args.methods:
        fgbg, wall_f = run_eval([*base, "--method", method], args.work / f"{method}_fgbg.json")
        orc, wall_o = run_eval([*base, "--method", method, "--oracle-labels"], args.work / f"{method}_oracle.json")
        lines.append(f"| {method} (oracle labels for 21-class) | {fmt(fgbg['mIoU'])} | {fmt(orc['mIoU'])} | "
                     f"{fmt(orc['pixel_accuracy'])} | {wall_f:.0f} + {wall_o:.0f} |")
        print(lines[-1], flush=True)
    for spec in args.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--checkpoint wants NAME=PATH, got {spec!r}")
        slug = "".join(c if c.isalnum() else "_" for c in name)
        res, wall = run_eval([*base, "--checkpoint", path, "--device", args.device], args.work / f"ckpt_{slug}.json")
        lines.append(f"| {name} | — | {fmt(res['mIoU'])} | {fmt(res['pixel_accuracy'])} | {wall:.0f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
