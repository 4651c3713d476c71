"""Run a trained model on images and write annotated PNGs.

    python tools/predict.py photo1.jpg photo2.jpg --run runs/detection/default --out preds/
    python tools/predict.py photo.jpg                       # the shipped default detector
    python tools/predict.py photo.jpg --task seg            # the shipped default segmenter (masks)
    python tools/predict.py photo.jpg --config configs/x.yaml --weights w.pt --preset evaluate

Detections are drawn as boxes with names and scores; segmentations as a colour overlay. Each
input ``x.jpg`` gives ``OUT/x_pred.png``; inputs sharing a name get ``x-2_pred.png``, ``x-3_pred.png``
… in the order given (a note line says so), never overwriting each other.
Each image's results are also printed (one line per detection, or the classes present).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

import visiontasks
from visiontasks.data import image_size
from visiontasks.device import check_device
from visiontasks.engine.rundir import check_out_dir

#: ``--task`` value → the task a Predictor reports
TASKS = {"det": "detection", "seg": "segmentation"}


def output_names(images: list[str]) -> list[str]:
    """``<stem>_pred.png`` per input; inputs sharing a stem (``a/x.jpg``, ``b/x.jpg``, ``x.png``) get
    ``<stem>_pred.png``, ``<stem>-2_pred.png``, ``<stem>-3_pred.png`` … in the order given, so that no
    output overwrites another (a note line says so)."""
    used: set[str] = set()
    names = []
    for path in images:
        stem = Path(path).stem
        name, k = f"{stem}_pred.png", 1
        while name in used:
            k += 1
            name = f"{stem}-{k}_pred.png"
        if k > 1:
            print(f"note: {path} shares its name with an earlier input; writing {name}", file=sys.stderr)
        used.add(name)
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by tools/train_det.py or train_seg.py")
    source.add_argument("--config", help="a YAML config (use with --weights)")
    parser.add_argument("--weights", help="a checkpoint file")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="det or seg: without --run/--config, which shipped model runs (det: "
                             "load_model('default'), seg: load_model('default-seg')); with them, the task the "
                             "model must have")
    parser.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--preset", default="visualize", choices=sorted(visiontasks.PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16: autocast on CPUs with native bf16 / CUDA (default: %(default)s)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    check_device(args.device)
    check_out_dir(out)
    for path in args.images:  # every input's header first: a bad file stops the command before any output
        image_size(path)
    names = output_names(args.images)
    shipped = "default-seg" if args.task == "seg" else "default"
    predictor = visiontasks.load_model(args.run or args.config or shipped, weights=args.weights,
                                       device=args.device, preset=args.preset, precision=args.precision)
    if args.task is not None and predictor.task != TASKS[args.task]:
        source = args.run or args.config or args.weights
        raise ValueError(f"--task {args.task} but {source} holds a {predictor.task} model")
    for path, name in zip(args.images, names):
        result = predictor.predict(path)
        dest = result.save(out / name)
        if predictor.task == "detection":
            print(f"{path}: {len(result)} detections -> {dest}")
            for box, name, score in zip(result.boxes.tolist(), result.label_names, result.scores.tolist()):
                print(f"  {name:>12s} {score:.3f} [{', '.join(f'{v:.1f}' for v in box)}]")
        else:
            present = sorted({result.class_names[int(c)] for c in result.mask.unique()})
            print(f"{path}: classes {present} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
