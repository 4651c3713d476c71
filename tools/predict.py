"""Run a trained model on images, folders, globs or videos and write annotated PNGs / videos.

    python tools/predict.py photo1.jpg photo2.jpg --run runs/detection/default --out preds/
    python tools/predict.py photos/ "more/**/*.jpg" clip.mp4 --save-json   # folders, globs, video
    python tools/predict.py photo.jpg                       # the shipped default detector
    python tools/predict.py photo.jpg --task seg            # the shipped default segmenter (masks)
    python tools/predict.py photo.jpg --config configs/x.yaml --weights w.pt --preset evaluate

Detections are drawn as boxes with names and scores; segmentations as a colour overlay. Each
input ``x.jpg`` gives ``OUT/x_pred.png``; inputs sharing a name get ``x-2_pred.png``, ``x-3_pred.png``
… in the order given (a note line says so), never overwriting each other.
Each image's results are also printed (one line per detection, or the classes present).
A folder is searched recursively; a video (OpenCV) gives ``OUT/<stem>_pred.mp4``, one annotated
frame per input frame; ``--save-json`` writes COCO results (``OUT/predictions.json``, image_id =
the image's path; ``OUT/<stem>_pred.json`` per video, image_id = frame index). Unreadable files in
a folder or glob and undecodable frames are reported and skipped. See visiontasks/inputs.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

import visiontasks
from visiontasks.device import check_device
from visiontasks.engine.rundir import check_out_dir
from visiontasks.inputs import check_inputs, expand_inputs, output_names, predict_inputs  # noqa: F401

#: ``--task`` value → the task a Predictor reports
TASKS = {"det": "detection", "seg": "segmentation"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files, folders (recursive), globs or video files")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by tools/train_det.py or train_seg.py")
    source.add_argument("--config", help="a YAML config (use with --weights)")
    parser.add_argument("--weights", help="a checkpoint file")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="det or seg: without --run/--config, which shipped model runs (det: "
                             "load_model('default'), seg: load_model('default-seg')); with them, the task the "
                             "model must have")
    parser.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--save-json", action="store_true",
                        help="also write detections in COCO results format (OUT/predictions.json, OUT/<video>_pred.json)")
    parser.add_argument("--preset", default="visualize", choices=sorted(visiontasks.PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16: autocast on CPUs with native bf16 / CUDA (default: %(default)s)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    check_device(args.device)
    check_out_dir(out)
    inputs = expand_inputs(args.images)
    check_inputs(inputs)  # every named file's header first: a bad file stops the command before any output
    shipped = "default-seg" if args.task == "seg" else "default"
    predictor = visiontasks.load_model(args.run or args.config or shipped, weights=args.weights,
                                       device=args.device, preset=args.preset, precision=args.precision)
    if args.task is not None and predictor.task != TASKS[args.task]:
        source = args.run or args.config or args.weights
        raise ValueError(f"--task {args.task} but {source} holds a {predictor.task} model")
    predict_inputs(predictor, inputs, out, save_json=args.save_json)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
