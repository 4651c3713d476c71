"""Convert a detection split between formats: VOC, COCO json, YOLO txt, LabelMe json -> VOC, COCO or YOLO.

    python tools/convert.py --dataset yolo --root my_export --split train --to voc --out my_voc
    python tools/convert.py --dataset labelme --root my_labels --split train --to coco --out my_coco
    python tools/convert.py --dataset voc --root VOC2007 --split trainval --to yolo --out voc_yolo
    python tools/convert.py --dataset labelme --root my_labels --split train --to voc --out my_voc --task segmentation

VOC: OUT/Annotations, JPEGImages (non-JPEG images re-encoded), ImageSets/Main/<split>.txt (and, for
--task segmentation of LabelMe, SegmentationClass/ + ImageSets/Segmentation/). COCO: OUT/<split>.json +
OUT/images/. YOLO: OUT/images/<split>, OUT/labels/<split>, OUT/data.yaml. Images are hard-linked where
possible. The logic is visiontasks.data.convert; bad input exits 2 with one line.
"""
from __future__ import annotations

import argparse
import sys

from _common import run_cli

from visiontasks.data.convert import FORMATS, convert
from visiontasks.data.doctor_read import DOCTOR_FORMATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DOCTOR_FORMATS, help="the source format")
    parser.add_argument("--root", help="source folder (coco: use --images and --annotations)")
    parser.add_argument("--split", required=True)
    parser.add_argument("--images", help="coco source: images folder")
    parser.add_argument("--annotations", help="coco source: annotation json")
    parser.add_argument("--classes", nargs="+", default=None, help="class names (default: the source's own)")
    parser.add_argument("--task", default="detection", choices=["detection", "segmentation"],
                        help="segmentation: LabelMe polygons as VOC SegmentationClass masks")
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from visiontasks.data.factory import build_dataset

    if args.task == "segmentation" and (args.dataset != "labelme" or args.to != "voc"):
        raise ValueError("--task segmentation converts LabelMe polygons to VOC masks only (--dataset labelme --to voc)")
    cfg = {"dataset": args.dataset, "root": args.root, "classes": args.classes, "images": args.images,
           "annotations": args.annotations}
    dataset = build_dataset(cfg, args.split, train=False, task=args.task)
    written = convert(dataset, args.to, args.out, args.split)
    print(f"wrote {len(dataset)} images of split {args.split!r} as {args.to}: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
