"""Print a model's layers: output shape, parameters and MACs per layer, totals, the paper's count.

    python tools/summary.py fcn8s --input 3x500x500
    python tools/summary.py yolov1                          # 448x448 warp: 271,703,550 params
    python tools/summary.py faster_rcnn --set backbone=small --input 3x600x800
    python tools/summary.py configs/detection/default.yaml --depth 2
    python tools/summary.py torchvision:vgg16 --input 3x224x224   # beside the paper's 138M

MODEL is a registry name (``visiontasks.list_models()``), ``torchvision:NAME`` or a config path.
MACs are counted by ``torch.utils.flop_counter`` (multiply-accumulates of convolutions and matrix
products; 1 MAC = 2 FLOPs). Weights are random: nothing is downloaded.
"""
from __future__ import annotations

import argparse
import sys

from _common import run_cli

from visiontasks.summary import build_named_model, parse_input_size, published_for, summary

DEFAULT_INPUT = {"detection": "3x600x800", "segmentation": "3x500x500"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="registry name, torchvision:NAME or a YAML config")
    parser.add_argument("--input", help="CxHxW (default: 3x600x800 detectors, 3x500x500 segmenters, else 3x224x224)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="builder arguments (registry name) or config overrides (config)")
    parser.add_argument("--depth", type=int, default=None, help="list modules down to this depth (default: leaves)")
    parser.add_argument("--num-proposals", type=int, default=300, help="boxes for proposal-fed detectors")
    args = parser.parse_args(argv)

    model, name, task, kwargs = build_named_model(args.model, args.set)
    size = parse_input_size(args.input or DEFAULT_INPUT.get(task, "3x224x224"))
    print(summary(model, size, depth=args.depth, num_proposals=args.num_proposals,
                  published=published_for(name, kwargs)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
