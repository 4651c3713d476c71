"""CPU latency, peak memory and mAP per model, precision (fp32/bf16/int8), runtime and threads.

    python tools/benchmark.py                                       # the shipped detector, every column
    python tools/benchmark.py default default-seg faster_rcnn_vgg16_voc07 --size 600x800 --threads 1 2
    python tools/benchmark.py runs/detection/default --precision fp32 int8 --runtime onnxruntime --json b.json
    visiontasks benchmark default --iterations 20 --map-images 50

Rows: 'default', 'default-seg', run directories, checkpoints, YAML configs or config names under
configs/ (random weights: no mAP). Every column is warmed up, then timed in interleaved rounds
(each round calls every column once, so load from other processes hits all alike): median and
minimum latency per image. Peak RSS: each column in a fresh subprocess (includes the interpreter
with torch and onnxruntime, given once as the baseline). mAP (VOC07; mIoU for segmenters) of each
precision on --map-split of --map-root (default: the embedded test split for models trained on the
embedded data). Prints a markdown table; --json writes everything. Measurements only: no goal is checked.
"""
from __future__ import annotations

import argparse
import sys

from _common import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="*", default=["default"], help="models (default: %(default)s)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--runtime", nargs="+", default=["pytorch", "onnxruntime"])
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--image", help="the image timed (default: the first embedded test image)")
    parser.add_argument("--size", help="HxW to resize it to (segmenters are exported for it)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10, help="interleaved timed rounds (default %(default)s)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--map-root", help="VOC-layout folder to score rows with weights on")
    parser.add_argument("--map-split", default="test")
    parser.add_argument("--map-images", type=int, help="score only the first N images of the split")
    parser.add_argument("--calib-root", help="int8: calibration folder (default: the model's embedded data)")
    parser.add_argument("--calib-split", default="trainval")
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--workdir", help="where the exports go (default: a temporary folder)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)

    from visiontasks.benchmark import benchmark, parse_columns
    from visiontasks.engine.run import write_json
    from visiontasks.export.quantize import vnni_warning

    columns = parse_columns(args.precision, args.runtime, args.threads)
    size = None
    if args.size:
        try:
            size = [int(v) for v in args.size.lower().split("x")]
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise ValueError(f"--size {args.size!r}: expected HxW, e.g. 600x800") from None
    if "int8" in args.precision and (line := vnni_warning()) is not None:
        print(line)
    calib = {"root": args.calib_root, "split": args.calib_split, "images": args.calib_images}
    result = benchmark(args.rows, columns, args.image, size, args.warmup, args.iterations, not args.no_rss,
                       args.map_root, args.map_split, args.map_images, args.workdir, calib)
    print(result["table"])
    if result["baseline_rss_mib"] is not None:
        print(f"peak RSS includes {result['baseline_rss_mib']:.0f} MiB of a process that loads no model")
    if args.json:
        write_json({k: v for k, v in result.items() if k != "table"}, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
