"""Score detections, segmentations or region proposals against a VOC-layout (or COCO) ground truth.

Detection, segmentation, proposals (made by tools/propose.py)::

    python tools/eval.py det --root VOC2007 --split test --detections DIR --metric voc07 [--out r.json] \\
        [--iou 0.75] [--reference devkit|voc_eval] [--classes auto | NAME ...] [--errors]   # + TIDE's breakdown
    python tools/eval.py det --metric coco --annotations gt.json --detections dets.json [--iou-type segm]
    python tools/eval.py det --checkpoint runs/x/checkpoint_last.pt --root VOC2007 --split test \\
        [--write-results DIR]          # also writes VOC comp4 files for the official server
    python tools/eval.py det --onnx model_int8.onnx --root VOC2007 --split test   # an export (tools/export.py)
    python tools/eval.py seg --root VOC2012 --split val --predictions DIR_OF_PNG [--out r.json]
    python tools/eval.py seg --checkpoint runs/x/checkpoint_last.pt --root VOC2012 --split val
    python tools/eval.py seg --method otsu|adaptive|region_growing|split_merge|edges [--oracle-labels] \\
        --root VOC2012 --split val [--save-predictions DIR]
    python tools/eval.py proposals --root VOC2007 --split test --proposals DIR [--out r.json] [--plot r.png]
    python tools/eval.py proposals --root VOC2007 --split test --table [--images 20]  # every selective-search mode

Scoring results files reads only the annotations and the split file, never JPEGImages/; ``det`` on
comp4 files imports no torch. Prints a per-class table and writes JSON (fractions in [0, 1]); the keys of
each task, ``--errors`` (TIDE, confusion, AP by size) and ``--report DIR``: docs/EVALUATION.md. Nothing to
score is null with one warning line. Bad input exits 2 with one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

from visiontasks.evaluation.report import format_metrics, public_metrics, warn_undefined, write_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    det = sub.add_parser("det", help="detection mAP")
    seg = sub.add_parser("seg", help="segmentation mIoU")
    prop = sub.add_parser("proposals", help="region proposal recall, average recall, MABO")
    for p, holds, split in ((det, "Annotations/, ImageSets/Main/; JPEGImages/ only with --checkpoint", "test"),
                            (seg, "SegmentationClass/, ImageSets/Segmentation/; JPEGImages/ only to run a model or "
                                  "a classic method", "val"), (prop, "Annotations/, ImageSets/Main/", "test")):
        p.add_argument("--root", required=p is not det, help=f"VOC-layout folder ({holds})")
        p.add_argument("--split", default=split)
        p.add_argument("--out", help="write the result JSON here")
    det.add_argument("--classes", nargs="+", default=None, help="default VOC's 20; 'auto': names in the GT and results")
    det.add_argument("--detections", help="dir of comp4_det_<split>_<class>.txt files, or a COCO results json")
    det.add_argument("--checkpoint", help="evaluate a trained model instead of results files")
    det.add_argument("--onnx", metavar="FILE", help="evaluate an exported .onnx (float or int8) with onnxruntime")
    det.add_argument("--metric", default="voc07", choices=["voc07", "voc12", "coco"])
    det.add_argument("--dataset", default="voc", choices=["voc", "yolo", "labelme"], help="--root's layout")
    seg.add_argument("--dataset", default="voc", choices=["voc", "labelme"], help="layout of --root")
    det.add_argument("--iou", type=float, default=None, help="VOC metrics: overlap a true positive needs (default 0.5)")
    det.add_argument("--reference", default=None, choices=["devkit", "voc_eval"], help="VOC metrics: 'devkit' "
                     "(VOCevaldet.m: >= T, 0:0.1:1; default) or 'voc_eval' (py-faster-rcnn: > T, np.arange)")
    det.add_argument("--cache-dir", metavar="DIR", help="annotation cache (default $VISIONTASKS_HOME/annotation-cache)")
    det.add_argument("--no-cache", action="store_true", help="parse every annotation file, write no cache")
    det.add_argument("--images", help="COCO images folder (--metric coco with --checkpoint); --report: the gallery's")
    det.add_argument("--annotations", help="COCO annotation json (--metric coco)")
    det.add_argument("--iou-type", default="bbox", choices=["bbox", "segm"], help="--metric coco: boxes or masks")
    det.add_argument("--write-results", metavar="DIR", help="with --checkpoint: write VOC comp4 results files")
    det.add_argument("--proposals", metavar="DIR", help="a proposals folder for a model fed proposals (default: its own)")
    det.add_argument("--pr-curves", metavar="PNG", help="draw the per-class PR curves")
    det.add_argument("--errors", action="store_true", help="add TIDE's breakdown, the confusion matrix, AP by size")
    seg.add_argument("--classes", nargs="+", default=None, help="labels 1..C (default VOC's); 'background' first: 0..C")
    group = seg.add_mutually_exclusive_group(required=True)
    group.add_argument("--predictions", help="dir of <image_id>.png label maps (palette or gray indices)")
    group.add_argument("--checkpoint", help="evaluate a trained model")
    group.add_argument("--method", choices=["otsu", "adaptive", "region_growing", "split_merge", "edges", "global"],
                       help="a classic baseline (scored as foreground/background unless --oracle-labels)")
    seg.add_argument("--oracle-labels", action="store_true", help="classic: each region takes its majority GT class")
    seg.add_argument("--save-predictions", metavar="DIR", help="write predicted label maps as VOC-palette PNGs")
    for p in (det, seg):
        p.add_argument("--device", default="cpu")
        p.add_argument("--report", metavar="DIR", help="write DIR/index.html: metrics, plots, errors, gallery")
        p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="with --checkpoint: autocast")
    prop.add_argument("--classes", nargs="+", default=None, help="class names (default: VOC's 20; 'auto')")
    need = prop.add_mutually_exclusive_group(required=True)
    need.add_argument("--proposals", help="folder written by tools/propose.py")
    need.add_argument("--table", action="store_true", help="run every selective-search mode, beside the paper's")
    prop.add_argument("--images", type=int, default=None, help="with --table: only the first N images")
    prop.add_argument("--top-n", type=int, default=None, help="score only the first N proposals of each image")
    prop.add_argument("--plot", metavar="PNG", help="draw recall against the number of proposals")
    return parser


def _need(args: argparse.Namespace, *names: str) -> None:
    if missing := [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]:
        raise ValueError(f"{args.task} with these options needs {', '.join(missing)}")


def _load(args: argparse.Namespace, task: str):
    from visiontasks.api import load_for_task
    return load_for_task(task, args.checkpoint, getattr(args, "onnx", None), args.device, args.precision)


def eval_det(args: argparse.Namespace) -> dict:
    from visiontasks.evaluation.voc.score import voc_options
    voc = voc_options(args.metric, args.iou, args.reference)
    if args.checkpoint or getattr(args, "onnx", None):
        return _eval_det_checkpoint(args, voc)
    if args.metric == "coco":
        from visiontasks.evaluation.coco import evaluate_coco_files
        _need(args, "annotations", "detections")
        return evaluate_coco_files(args.annotations, args.detections, args.iou_type, errors=args.errors)
    from visiontasks.evaluation.voc.cache import default_cache_dir
    from visiontasks.evaluation.voc.score import evaluate_voc_files
    _need(args, "root", "detections")
    if args.dataset != "voc":
        raise ValueError(f"results files are scored against VOC layout; for --dataset {args.dataset} use --checkpoint "
                         "or convert the ground truth first (tools/convert.py --to voc)")
    return evaluate_voc_files(args.root, args.split, args.detections, args.classes, args.metric, **voc,
                              cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
                              errors=args.errors)


def _eval_det_checkpoint(args: argparse.Namespace, voc: dict) -> dict:
    from visiontasks.data import COCODetection
    from visiontasks.data.factory import open_dataset
    from visiontasks.engine.evaluate import attach_proposals, evaluate_detection
    from visiontasks.evaluation import write_voc_results
    if args.iou_type != "bbox":
        raise ValueError("--iou-type segm scores mask results files; the detectors here output boxes")
    if args.classes == "auto":
        raise ValueError("--classes auto scores results files; with --checkpoint the model's classes are used")
    _need(args, *(("images", "annotations") if args.metric == "coco" else ("root",)))
    predictor = _load(args, "detection")
    dataset = (COCODetection(args.images, args.annotations) if args.metric == "coco" else
               open_dataset(args.dataset, args.root, args.split, args.classes or predictor.classes))
    attach_proposals(predictor.model, dataset, args.proposals)
    pairs: list[tuple] = []  # (prediction, target) of one inference pass, for --write-results and --report
    result = evaluate_detection(predictor.model, dataset, args.metric, args.device, errors=args.errors,
                                on_prediction=lambda pred, tgt: pairs.append((pred, tgt)), **voc)
    args.recorded = (dataset, pairs)
    if args.write_results:
        write_voc_results(args.write_results, args.split, dataset.classes, dataset.ids, [p for p, _ in pairs])
    return result


def eval_seg(args: argparse.Namespace) -> dict:
    from visiontasks.evaluation.segmentation import split_background
    background, classes = split_background(args.classes)
    if args.predictions:
        if args.dataset != "voc":
            raise ValueError("--predictions are scored against VOC layout; for --dataset labelme use --checkpoint")
        from visiontasks.evaluation.seg_files import score_label_pngs
        from visiontasks.evaluation.voc.ground_truth import DEFAULT_CLASSES
        return score_label_pngs(args.root, args.split, args.predictions, [background, *(classes or DEFAULT_CLASSES)])
    from visiontasks.data import save_label_png
    from visiontasks.data.factory import open_dataset
    hooks = [h for h in (args.save_predictions and (lambda pred, tgt: save_label_png(Path(
        args.save_predictions) / f"{tgt['image_id']}.png", pred)), getattr(args, "seg_records", None)) if h]
    save = (lambda pred, tgt: [h(pred, tgt) for h in hooks]) if hooks else None  # --report keeps the worst
    if args.method:
        from visiontasks.classic.evaluate import evaluate_classic
        dataset = open_dataset(args.dataset, args.root, args.split, classes, task="segmentation")
        return evaluate_classic(args.method, dataset, args.oracle_labels, background, on_prediction=save)
    from visiontasks.engine.evaluate import evaluate_segmentation
    predictor = _load(args, "segmentation")
    dataset = open_dataset(args.dataset, args.root, args.split, classes or predictor.classes, task="segmentation")
    return evaluate_segmentation(predictor.model, dataset, device=args.device, on_prediction=save,
                                 background=background)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.task != "seg" and args.classes == ["auto"]:
        args.classes = "auto"  # names from the ground truth and the results files
    if getattr(args, "report", None):  # checked before the run: a bad folder costs nothing
        from visiontasks.evaluation.report_cli import prepare_report, write_report
        prepare_report(args)
    if args.task == "proposals" and args.table:
        from visiontasks.detection.proposals.table import format_proposal_table, proposal_table
        rows = proposal_table(args.root, args.split, limit=args.images, progress=print, classes=args.classes)
        print(format_proposal_table(rows, f"{args.root} {args.split}"))
        return 0
    if args.task == "proposals":
        from visiontasks.engine.evaluate import evaluate_proposals
        result = evaluate_proposals(args.root, args.split, args.proposals, args.classes, args.top_n, plot=args.plot)
    else:
        result = (eval_det if args.task == "det" else eval_seg)(args)
    if getattr(args, "pr_curves", None) and "per_class" in result and "curves" in result:
        from visiontasks.evaluation import plot_pr_curves
        plot_pr_curves(result["curves"], list(result["per_class"]), args.pr_curves)
    if result.get("summary"):
        print(result["summary"])
    full, result = result, public_metrics(result)
    if args.task != "proposals":
        print(format_metrics(result))
        warn_undefined(result, f"split {args.split!r} of {args.root}" if args.root else str(args.annotations))
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    if getattr(args, "report", None):  # after --out: a failing report loses no figure
        print(f"wrote {write_report(args, full, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
