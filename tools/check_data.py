"""The data doctor: read a split and print one table of what would hurt training.

    python tools/check_data.py --dataset voc --root VOC2007 --split trainval
    python tools/check_data.py --dataset yolo --root my_export --split train --config configs/detection/default.yaml
    python tools/check_data.py --dataset coco --images DIR --annotations a.json --split train
    visiontasks check-data --dataset labelme --root my_labels --split train

Rows: images, objects, class imbalance, missing / unreadable image files, annotation files the reader
refuses, image sizes that differ from the annotation, degenerate boxes, boxes wholly or partly outside
the image, tiny boxes (< 8 px), exact duplicates, images without objects, image sizes; with a
two-stage ``--config``, the boxes no anchor of that config matches at IoU >= 0.5 after its resize.
See docs/OWN_DATA.md.

Exit codes: 0 the split would train (warnings may be listed); 1 a finding marked FAIL would stop or
break training; 2 the split cannot be read at all or bad options (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys

from _common import run_cli

from visiontasks.data.doctor import diagnose, exit_code, format_table
from visiontasks.data.doctor_read import DOCTOR_FORMATS, read_records


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DOCTOR_FORMATS)
    parser.add_argument("--root", help="dataset folder (VOC layout, folder of data.yaml, LabelMe folder; coco: "
                                       "the folder of images/ and <split>.json)")
    parser.add_argument("--split", required=True, help="split name (trainval, train, val ...)")
    parser.add_argument("--images", help="coco: images folder")
    parser.add_argument("--annotations", help="coco: annotation json")
    parser.add_argument("--classes", nargs="+", default=None, help="class names (default: the format's own)")
    parser.add_argument("--config", help="a two-stage detector config: adds the anchor-coverage row")
    return parser


def _anchor_fn(config: str | None):
    if not config:
        return None
    from visiontasks.config import load_config
    from visiontasks.detection.anchor_cover import anchor_fn
    from visiontasks.registry import get_model

    kwargs = dict(load_config(config)["model"])
    name = kwargs.pop("name")
    kwargs["pretrained_backbone"] = False  # the anchors need no weights
    kwargs["num_classes"] = kwargs.get("num_classes") or 2
    fn = anchor_fn(get_model(name, **kwargs))
    if fn is None:
        print(f"note: {config}: model {name!r} has no RPN anchors; no anchor-coverage row", file=sys.stderr)
    return fn


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fn = _anchor_fn(args.config)
    classes, records = read_records(args.dataset, args.root, args.split, args.classes, args.images, args.annotations)
    report = diagnose(records, classes, drops_degenerate=args.dataset == "coco", anchor_fn=fn,
                      inclusive=args.dataset == "voc")
    where = args.root or args.annotations
    print(format_table(report, f"{args.dataset} {where} split {args.split!r}"
                               + (f", anchors of {args.config}" if args.config else "")))
    code = exit_code(report)
    print(f"\n{'training would fail: fix the FAIL rows' if code else 'the split would train'} (exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(run_cli(main))
