"""Export a trained detector or segmenter to ONNX, checked against onnxruntime before it is written.

    python tools/export.py --run runs/detection/default --out model.onnx
    python tools/export.py --config configs/detection/yolov1_small.yaml --weights w.pt --out yolo.onnx
    python tools/export.py --out default.onnx --check-images photo.jpg     # the shipped default detector
    python tools/export.py --run runs/seg --input 3x375x500 --out seg.onnx # segmenters: one fixed size

Detectors take one float (3, H, W) image in [0, 1] (any size) and return ``boxes`` (N, 4) xyxy in
its pixels, ``scores`` (N,) and ``labels`` (N,) int64 in 1..C, like torchvision's exported
detectors; Fast R-CNN takes its proposals (R, 4) as a second input. Segmenters take a (B, 3, H, W)
batch at the exported size and return ``logits`` and ``mask``. The score threshold is the preset's.
Beside the .onnx a .json names the classes, inputs, outputs and the check results.
Needs the export extra: pip install -e ".[export]". R-CNN and SPP-net are refused with the reason.

    python tools/export.py --quantize int8 --out default_int8.onnx   # int8, calibrated on the embedded trainval
    python tools/export.py --run R --quantize int8 --calib-root VOC2007 --calib-split trainval --calib-images 64 --out q.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

import visiontasks
from visiontasks.api import to_tensor_image
from visiontasks.summary import parse_input_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by tools/train_det.py or train_seg.py")
    source.add_argument("--config", help="a YAML config (use with --weights)")
    parser.add_argument("--weights", help="a checkpoint file")
    parser.add_argument("--format", default="onnx", choices=["onnx"])
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--input", default="3x224x288",
                        help="CxHxW of the traced example (segmenters: the exported size; default %(default)s)")
    parser.add_argument("--preset", default="visualize", choices=sorted(visiontasks.PRESETS),
                        help="detectors: the score threshold built into the graph (default %(default)s)")
    parser.add_argument("--check-images", nargs="*", default=[], help="more images to compare PyTorch and onnxruntime on")
    parser.add_argument("--num-proposals", type=int, default=300, help="proposal-fed detectors: boxes used to check")
    parser.add_argument("--quantize", choices=["int8"], help="int8 static quantization (onnxruntime QDQ, per channel), "
                        "calibrated on training images; the float graph is written beside --out as *.fp32.onnx")
    parser.add_argument("--calib-root", help="--quantize: VOC-layout folder of calibration images (default: the "
                        "embedded dataset, the shipped default detector's training data)")
    parser.add_argument("--calib-split", default="trainval", help="--quantize: its split (default %(default)s)")
    parser.add_argument("--calib-images", type=int, default=32, help="--quantize: how many (default %(default)s)")
    args = parser.parse_args(argv)

    from visiontasks.engine.run import write_json
    from visiontasks.export import export_onnx

    size = parse_input_size(args.input)
    predictor = visiontasks.load_model(args.run or args.config or "default", weights=args.weights, preset=args.preset)
    name = predictor.config.get("model", {}).get("name", type(predictor.model).__name__)
    checks = []
    for path in args.check_images:
        image = to_tensor_image(path)
        if predictor.task == "segmentation" and tuple(image.shape) != size:
            raise ValueError(f"{path}: the segmenter is exported for {args.input}, the image is "
                             f"{'x'.join(map(str, image.shape))}")
        checks.append((path, image))
    if args.quantize:
        from visiontasks.export.int8 import export_int8

        return export_int8(predictor, name, args.out, size, checks, args.calib_root, args.calib_split,
                           args.calib_images, args.num_proposals)
    report = export_onnx(predictor.model, predictor.task, args.out, name=name, image_size=size,
                         num_proposals=args.num_proposals, check_images=checks)
    meta = {"model": name, "task": predictor.task, "classes": list(predictor.classes), "inputs": report.inputs,
            "outputs": report.outputs, "score_thresh": predictor.score_thresh, "input_size": list(size),
            "checks": report.checks}
    write_json(meta, Path(args.out).with_suffix(".json"))
    print(f"wrote {report.path} ({name}, {predictor.task}); onnxruntime matches PyTorch on:")
    for line in report.checks:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
