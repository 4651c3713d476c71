"""Regenerate ``docs/gallery/``: predictions of the default models on a few photographs and on the
embedded test split, with precision-recall and loss curves.

    python tools/gallery.py                                   # -> docs/gallery/
    python tools/gallery.py --photos ../shared/data/coco128-voc/VOC2007/JPEGImages --iters 300

What it does, in order (all on the CPU unless ``--device`` says otherwise):

1. builds the embedded shapes dataset (seed 0) under ``--work``;
2. evaluates the shipped detector ``weights/default_det.pt`` on its test split (VOC07 mAP) and
   draws its per-class PR curves (``tools/eval.py det --pr-curves``);
3. trains the default detector and the default segmenter for ``--iters`` iterations each
   (``tools/train_det.py`` / ``train_seg.py``) for their loss curves (and the segmenter's mIoU; no
   segmentation weights are shipped, so this short run is the segmenter drawn);
4. draws both models' predictions on ``--photos`` (the photographs named by ``--ids``, skipped
   with a note when absent) and on the first ``--num-embedded`` test images, each downscaled so
   its longer side is at most ``--max-side`` px;
5. writes ``README.md`` listing every picture and the measured figures.

With the default ``--iters 300`` it took 22 min wall on the 2-core development machine (measured
under load, mostly the segmenter's training); ``--iters 20`` takes under a minute.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import REPO, run_cli
from PIL import Image

import visiontasks
from visiontasks.data import build_embedded_dataset
from visiontasks.errors import InputError
from visiontasks.results import save_png

TOOLS = Path(__file__).resolve().parent
PHOTOS = REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007" / "JPEGImages"
IDS = ("000000000042", "000000000049", "000000000071")  # a dog; horses and riders; cars and a train


def _tool(script: str, *args: str) -> None:
    """Runs ``tools/<script>`` in a fresh process; its failure stops the gallery with its message."""
    proc = subprocess.run([sys.executable, str(TOOLS / script), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{proc.stderr.strip()}")


def _small_png(picture: np.ndarray, max_side: int, dest: Path) -> None:
    """Writes ``picture`` with its longer side at most ``max_side`` px, as a 256-colour PNG."""
    image = Image.fromarray(picture)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    save_png(np.asarray(image.quantize(256, method=Image.Quantize.MEDIANCUT).convert("RGB")), dest)


def _draw(predictor, path: Path, dest: Path, max_side: int) -> str:
    """Predicts on ``path``, writes the downscaled drawing to ``dest`` and returns a summary."""
    result = predictor.predict(str(path))
    _small_png(result.draw(), max_side, dest)
    if predictor.task == "detection":
        names = sorted(set(result.label_names))
        return f"detections: {len(result)}" + (f" ({', '.join(names)})" if names else "")
    present = sorted({result.class_names[int(c)] for c in result.mask.unique()} - {"background"})
    return f"classes: {', '.join(present) or 'none'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "docs" / "gallery"), help="(default: docs/gallery)")
    parser.add_argument("--photos", default=str(PHOTOS), help="folder of the photographs (default: %(default)s)")
    parser.add_argument("--ids", nargs="+", default=list(IDS), help="photograph names without .jpg")
    parser.add_argument("--iters", type=int, default=300, help="training iterations per loss curve")
    parser.add_argument("--num-embedded", type=int, default=3, help="embedded test images drawn")
    parser.add_argument("--max-side", type=int, default=640, help="longest side of a picture, px")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.max_side < 16 or args.num_embedded < 0:
        raise InputError("--iters/--max-side/--num-embedded", "must be >= 1, >= 16 and >= 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        lines = build(args, out, work)
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"gallery written to {out}")
    return 0


def build(args: argparse.Namespace, out: Path, work: Path) -> list[str]:
    """Steps 1–4 of the module docstring; returns the README's figure lines."""
    cache = work / "embedded"
    root = build_embedded_dataset(cache, seed=0)
    common = ["--device", args.device, "--overwrite", f"train.max_iters={args.iters}", "data.num_workers=0",
              f"data.root={cache}", "train.checkpoint_every=100000"]
    weights = REPO / "weights" / "default_det.pt"
    _tool("eval.py", "det", "--checkpoint", str(weights), "--root", str(root), "--split", "test",
          "--pr-curves", str(out / "default_det_pr.png"), "--out", str(work / "det_eval.json"),
          "--device", args.device)
    det_map = json.loads((work / "det_eval.json").read_text())
    for script, name in (("train_det.py", "det"), ("train_seg.py", "seg")):
        _tool(script, "--out", str(work / name), *common)
        (out / f"{name}_{args.iters}it_loss.png").write_bytes((work / name / "loss.png").read_bytes())
    seg_metrics = json.loads((work / "seg" / "metrics.json").read_text())
    det_short = json.loads((work / "det" / "metrics.json").read_text())

    models = {"det": visiontasks.load_model("default", device=args.device),
              "seg": visiontasks.load_model(work / "seg", device=args.device)}
    inputs = [Path(args.photos) / f"{i}.jpg" for i in args.ids]
    missing = [p for p in inputs if not p.is_file()]
    inputs = [p for p in inputs if p.is_file()]
    test_ids = (root / "ImageSets" / "Main" / "test.txt").read_text().split()[: args.num_embedded]
    inputs += [root / "JPEGImages" / f"{i}.jpg" for i in test_ids]
    rows = []
    for path in inputs:
        cells = [f"`{path.name}`"]
        for tag, predictor in models.items():
            name = f"{tag}_{path.stem}.png"
            summary = _draw(predictor, path, out / name, args.max_side)
            cells.append(f"![{tag} {path.stem}]({name})<br>{summary}")
        rows.append("| " + " | ".join(cells) + " |")
    return readme(args, det_map, det_short, seg_metrics, rows, missing)


def _fig(metrics: dict, key: str) -> str:
    """``metrics[key]`` (a fraction) as a percentage with two decimals."""
    return f"{100 * float(metrics[key]):.2f}%" if key in metrics else "n/a"


def readme(args, det_map: dict, det_short: dict, seg_metrics: dict, rows: list[str], missing: list[Path]) -> list[str]:
    """The gallery's README: what each picture is and the figures measured while drawing them."""
    note = [f"Photographs not found (skipped): {', '.join(p.name for p in missing)}.", ""] if missing else []
    return [
        "# Gallery", "",
        "Written by `python tools/gallery.py` (regenerate it with that command; see its `--help`).", "",
        "**What the models are.** No weights trained on VOC or COCO exist in this repository. The detector",
        "is the shipped `weights/default_det.pt` (a small Faster R-CNN trained on the embedded shapes",
        "dataset: circle, square, triangle); the segmenter is the default `fcn_small` config trained by",
        f"this script for {args.iters} iterations on the same shapes (no segmentation weights are shipped).",
        "Neither knows any real-world class, so on the photographs they find little or nothing (or",
        "mistake round or square things for shapes): those rows show how pictures are drawn, not",
        "accuracy. The embedded test images show what the models were trained for.", "",
        "## Figures measured by this run", "",
        f"- shipped detector, embedded test split (100 images), VOC07 mAP: **{_fig(det_map, 'mAP')}**"
        " — PR curves: [default_det_pr.png](default_det_pr.png)",
        f"- default detector trained {args.iters} iterations here, its final mAP: {_fig(det_short, 'mAP')}"
        f" — loss: [det_{args.iters}it_loss.png](det_{args.iters}it_loss.png)",
        f"- default segmenter trained {args.iters} iterations here, mIoU on the embedded val split: "
        f"**{_fig(seg_metrics, 'mIoU')}** — loss: [seg_{args.iters}it_loss.png](seg_{args.iters}it_loss.png)", "",
        *note,
        "## Predictions", "",
        f"Each picture is downscaled to at most {args.max_side} px on its longer side.", "",
        "| image | detector (`weights/default_det.pt`) | segmenter (short run) |",
        "|---|---|---|",
        *rows,
    ]


if __name__ == "__main__":
    sys.exit(run_cli(main))
