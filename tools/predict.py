"""Run a trained model on images and write annotated PNGs.

    python tools/predict.py photo1.jpg photo2.jpg --run runs/detection/default --out preds/
    python tools/predict.py photo.jpg                       # the shipped default detector
    python tools/predict.py photo.jpg --config configs/x.yaml --weights w.pt --preset evaluate

Detections are drawn as boxes with names and scores; segmentations as a colour overlay.
Each image's results are also printed (one line per detection, or the classes present).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

import visiontasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by tools/train_det.py or train_seg.py")
    source.add_argument("--config", help="a YAML config (use with --weights)")
    parser.add_argument("--weights", help="a checkpoint file")
    parser.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--preset", default="visualize", choices=sorted(visiontasks.PRESETS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    predictor = visiontasks.load_model(args.run or args.config or "default", weights=args.weights,
                                       device=args.device, preset=args.preset)
    out = Path(args.out)
    for path in args.images:
        result = predictor.predict(path)
        dest = result.save(out / f"{Path(path).stem}_pred.png")
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
