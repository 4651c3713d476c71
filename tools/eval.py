"""Score detections or segmentations against a VOC-layout (or COCO) ground truth.

Detection::

    python tools/eval.py det --root VOC2007 --split test --detections DIR --metric voc07 [--out r.json] \\
        [--iou 0.75] [--reference devkit|voc_eval] [--classes auto | NAME ...]
    python tools/eval.py det --metric coco --annotations gt.json --detections dets.json [--iou-type segm]
    python tools/eval.py det --checkpoint runs/x/checkpoint_last.pt --root VOC2007 --split test \\
        [--write-results DIR]          # also writes VOC comp4 files for the official server

Segmentation::

    python tools/eval.py seg --root VOC2012 --split val --predictions DIR_OF_PNG [--out r.json]
    python tools/eval.py seg --checkpoint runs/x/checkpoint_last.pt --root VOC2012 --split val
    python tools/eval.py seg --method otsu|adaptive|region_growing|split_merge|edges [--oracle-labels] \\
        --root VOC2012 --split val [--save-predictions DIR]

Region proposals (made by tools/propose.py)::

    python tools/eval.py proposals --root VOC2007 --split test --proposals DIR [--out r.json] [--plot r.png]

Scoring results files reads only the annotations (Annotations/ or SegmentationClass/) and the
split file, never JPEGImages/; ``det`` on comp4 files imports no torch.

Prints a per-class table and writes JSON: ``{"metric", "iou", "reference", "mAP", "per_class"}``
for VOC detection, the 12 pycocotools stats, ``per_class`` AP and ``iou_type`` for COCO (whose
standard 12-line summary is printed too), ``{"mIoU", "pixel_accuracy", "mean_class_accuracy",
"per_class", "per_class_accuracy"}`` for segmentation (fractions in [0, 1]; null for a figure with
nothing to score — a class without ground truth, a split without objects — with a warning line), ``{"recall_50", "recall_70", "average_recall",
"mabo", "boxes_per_image", "seconds_per_image"}`` for proposals (seconds of the proposer from
DIR/timing.json, null if unknown). Bad input exits 2 with one line naming the file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from _common import run_cli

from visiontasks.errors import InputError
from visiontasks.evaluation.report import (format_metrics, public_metrics, segmentation_result, warn,
                                           warn_undefined, write_json)

#: First --classes names that name label 0 of a segmentation (the rest are 1..C).
BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg", "void", "unlabeled", "unlabelled")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    det = sub.add_parser("det", help="detection mAP")
    det.add_argument("--root", help="VOC-layout folder (Annotations/, ImageSets/Main/; JPEGImages/ only with "
                                    "--checkpoint)")
    det.add_argument("--split", default="test")
    det.add_argument("--classes", nargs="+", default=None,
                     help="class names, any (default: VOC's 20); 'auto': the sorted names found in the annotations")
    det.add_argument("--detections", help="dir of comp4_det_<split>_<class>.txt files, or a COCO results json")
    det.add_argument("--checkpoint", help="evaluate a trained model instead of results files")
    det.add_argument("--metric", default="voc07", choices=["voc07", "voc12", "coco"])
    det.add_argument("--iou", type=float, default=None,
                     help="VOC metrics: overlap a true positive needs (default 0.5)")
    det.add_argument("--reference", default=None, choices=["devkit", "voc_eval"],
                     help="VOC metrics: 'devkit' (VOCevaldet.m: overlap >= T, MATLAB 0:0.1:1 thresholds; default) "
                          "or 'voc_eval' (py-faster-rcnn: > T, np.arange thresholds)")
    det.add_argument("--cache-dir", metavar="DIR",
                     help="annotation cache (keyed by file path, size and mtime; default $VISIONTASKS_HOME/"
                          "annotation-cache or ~/.cache/visiontasks/annotation-cache)")
    det.add_argument("--no-cache", action="store_true", help="parse every annotation file, write no cache")
    det.add_argument("--images", help="COCO images folder (--metric coco with --checkpoint)")
    det.add_argument("--annotations", help="COCO annotation json (--metric coco)")
    det.add_argument("--iou-type", default="bbox", choices=["bbox", "segm"], help="--metric coco: boxes or masks")
    det.add_argument("--write-results", metavar="DIR", help="with --checkpoint: write VOC comp4 results files")
    det.add_argument("--proposals", metavar="DIR",
                     help="with --checkpoint of a model fed proposals (Fast R-CNN, SPP-net, R-CNN): their folder "
                          "(tools/propose.py); default: computed per image with the model's proposal method")
    det.add_argument("--pr-curves", metavar="PNG", help="draw the per-class PR curves")
    seg = sub.add_parser("seg", help="segmentation mIoU")
    seg.add_argument("--root", required=True, help="VOC-layout folder (SegmentationClass/, ImageSets/Segmentation/; "
                                                   "JPEGImages/ only to run a model or a classic method)")
    seg.add_argument("--split", default="val")
    seg.add_argument("--classes", nargs="+", default=None,
                     help="names of labels 1..C (default: VOC's 20); a first name such as 'background' names label 0")
    group = seg.add_mutually_exclusive_group(required=True)
    group.add_argument("--predictions", help="dir of <image_id>.png label maps (palette or gray indices)")
    group.add_argument("--checkpoint", help="evaluate a trained model")
    group.add_argument("--method", choices=["otsu", "adaptive", "region_growing", "split_merge", "edges", "global"],
                       help="a classic baseline (scored as foreground/background unless --oracle-labels)")
    seg.add_argument("--oracle-labels", action="store_true",
                     help="classic methods: label each region with its majority ground-truth class (upper bound)")
    seg.add_argument("--save-predictions", metavar="DIR", help="write predicted label maps as VOC-palette PNGs")
    for p in (det, seg):
        p.add_argument("--out", help="write the result JSON here")
        p.add_argument("--device", default="cpu")
        p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                       help="with --checkpoint: bf16 autocast on CPUs with native bf16 / CUDA (default: %(default)s)")
    prop = sub.add_parser("proposals", help="region proposal recall, average recall, MABO")
    prop.add_argument("--root", required=True, help="VOC-layout folder (Annotations/, ImageSets/Main/)")
    prop.add_argument("--split", default="test")
    prop.add_argument("--classes", nargs="+", default=None, help="class names (default: VOC's 20; 'auto')")
    prop.add_argument("--proposals", required=True, help="folder written by tools/propose.py")
    prop.add_argument("--top-n", type=int, default=None, help="score only the first N proposals of each image")
    prop.add_argument("--out", help="write the result JSON here")
    prop.add_argument("--plot", metavar="PNG", help="draw recall against the number of proposals")
    return parser


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise ValueError(f"{args.task} with these options needs {', '.join(missing)}")


def _det_classes(classes: list[str] | None) -> list[str] | str | None:
    return "auto" if classes == ["auto"] else classes


def _where(args: argparse.Namespace) -> str:
    return f"split {args.split!r} of {args.root}" if getattr(args, "root", None) else str(args.annotations)


def eval_det(args: argparse.Namespace) -> dict:
    if args.metric == "coco":
        if args.iou is not None or args.reference is not None:
            raise ValueError("--iou and --reference apply to voc07/voc12; COCO reports AP50, AP75 and AP@[.5:.95]")
        if args.checkpoint:
            if args.iou_type != "bbox":
                raise ValueError("--iou-type segm scores mask results files; the detectors here output boxes")
            return _eval_det_checkpoint(args)
        _need(args, "annotations", "detections")
        from visiontasks.evaluation.coco import coco_evaluate

        res = coco_evaluate(args.annotations, args.detections, iou_type=args.iou_type)
        return _coco_result(args, res)
    if args.iou is not None and not 0.0 < args.iou <= 1.0:
        raise ValueError(f"--iou must lie in (0, 1], got {args.iou!r}")
    if args.checkpoint:
        return _eval_det_checkpoint(args)
    from visiontasks.evaluation.voc.cache import default_cache_dir
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth
    from visiontasks.evaluation.voc.results import read_voc_results

    _need(args, "root", "detections")
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    gt = load_detection_ground_truth(args.root, args.split, _det_classes(args.classes), cache_dir=cache)
    preds = read_voc_results(args.detections, args.split, gt.classes, gt.ids)
    return _score_voc(args, gt.classes, preds, (gt.boxes, gt.labels, gt.difficult))


def _score_voc(args: argparse.Namespace, classes: Sequence[str], preds: Sequence[list], gts: Sequence[list]) -> dict:
    """VOC AP with the command line's metric, IoU threshold and reference; warns about classes without ground truth."""
    from visiontasks.evaluation.voc.ap import eval_detection_voc

    iou = 0.5 if args.iou is None else args.iou
    reference = args.reference or "devkit"
    res = eval_detection_voc(*preds, *gts, num_classes=len(classes), iou_thresh=iou, metric=args.metric,
                             reference=reference)
    absent = [name for name, n in zip(classes, res["npos"]) if n == 0]
    if absent and len(absent) < len(classes):
        warn(f"{_where(args)}: no ground truth for {len(absent)} class(es) {absent}: their AP is undefined "
             "(null) and left out of the mAP")
    return {"metric": args.metric, "iou": iou, "reference": reference, "mAP": float(res["map"]),
            "per_class": dict(zip(classes, map(float, res["ap"]))), "curves": res}


def _coco_result(args: argparse.Namespace, res: dict) -> dict:
    stats = res["stats"]
    undefined = [k for k, v in stats.items() if np.isnan(v) and k != "AP"]
    if undefined:
        warn(f"{args.annotations}: COCO stats {', '.join(undefined)} are undefined (no ground truth in that "
             "area range) and written as null")
    return {"metric": "coco", "iou_type": args.iou_type, "mAP": stats["AP"], **stats, "per_class": res["per_class"],
            "summary": res["summary"]}


def _load(args: argparse.Namespace, task: str):
    import visiontasks

    predictor = visiontasks.load_model(args.checkpoint, device=args.device, preset="evaluate",
                                       precision=args.precision)
    if predictor.task != task:
        other = "det" if predictor.task == "detection" else "seg"
        raise InputError(args.checkpoint, f"is a {predictor.task} checkpoint, but 'eval.py {args.task}' scores "
                                          f"{task}; use 'eval.py {other}'")
    return predictor


def _eval_det_checkpoint(args: argparse.Namespace) -> dict:
    from visiontasks.data import VOCDetection
    from visiontasks.engine.evaluate import predict_dataset
    from visiontasks.evaluation import write_voc_results

    predictor = _load(args, "detection")
    if args.metric == "coco":
        from visiontasks.data import COCODetection

        _need(args, "images", "annotations")
        dataset = COCODetection(args.images, args.annotations)
    else:
        _need(args, "root")
        classes = _det_classes(args.classes)
        if classes == "auto":
            raise ValueError("--classes auto scores results files; with --checkpoint the model's classes are used")
        dataset = VOCDetection(args.root, args.split, classes=classes or predictor.classes)
    model = predictor.model
    if args.proposals:
        if not getattr(model, "needs_proposals", False):
            raise ValueError(f"--proposals given, but {args.checkpoint} is a model that makes its own proposals")
        from visiontasks.detection.proposals import ProposalStore

        dataset.proposals = ProposalStore(args.proposals, model.proposal_params)
    elif getattr(model, "needs_proposals", False):
        dataset.proposals = _on_the_fly(model, dataset)
    preds, targets = [], []
    for pred, tgt in predict_dataset(model, dataset, args.device):
        preds.append(pred)
        targets.append(tgt)
    if args.metric == "coco":
        from visiontasks.evaluation import coco_evaluate, detections_to_coco

        results = [r for p, t in zip(preds, targets) for r in detections_to_coco(
            int(t["coco_id"]), p["boxes"].numpy(), p["scores"].numpy(), p["labels"].numpy(), dataset.label_to_cat_id)]
        metrics = _coco_result(args, coco_evaluate(dataset.coco, results))
    else:
        fields = [[t[k].numpy() for t in targets] for k in ("boxes", "labels", "difficult")]
        as_lists = ([p[k].numpy() for p in preds] for k in ("boxes", "labels", "scores"))
        metrics = _score_voc(args, dataset.classes, list(as_lists), fields)
    if args.write_results:
        write_voc_results(args.write_results, args.split, dataset.classes, dataset.ids, preds)
    return metrics


def _on_the_fly(model, dataset):
    """Proposals computed per image with the model's own method (no folder given)."""
    from visiontasks.data import read_image

    index = {image_id: k for k, image_id in enumerate(dataset.ids)}

    def proposals(image_id: str):
        return model.propose(read_image(dataset.image_path(index[image_id])).float() / 255.0)

    return proposals


def _seg_classes(classes: list[str] | None) -> tuple[str, list[str] | None]:
    """(name of label 0, names of labels 1..C or None for VOC's) from --classes."""
    if classes == ["auto"]:
        raise ValueError("--classes auto applies to detection; give the names of mask labels 1..C")
    if classes and classes[0].lower() in BACKGROUND_NAMES:
        if len(classes) == 1:
            raise ValueError(f"--classes names only label 0 ({classes[0]!r}); add the names of labels 1..C")
        return classes[0], classes[1:]
    return "background", classes


def _saver(args: argparse.Namespace):
    if not args.save_predictions:
        return None
    from visiontasks.data import save_label_png

    out = Path(args.save_predictions)
    return lambda pred, tgt: save_label_png(out / f"{tgt['image_id']}.png", pred)


def eval_seg(args: argparse.Namespace) -> dict:
    background, classes = _seg_classes(args.classes)
    if args.predictions:
        return _eval_seg_files(args, background, classes)
    from visiontasks.data import VOCSegmentation

    if args.checkpoint:
        from visiontasks.engine.evaluate import evaluate_segmentation

        predictor = _load(args, "segmentation")
        dataset = VOCSegmentation(args.root, args.split, classes=classes or predictor.classes)
        result = evaluate_segmentation(predictor.model, dataset, device=args.device, on_prediction=_saver(args))
        result = {**result, "per_class": _renamed(result["per_class"], background)}
        if "per_class_accuracy" in result:
            result["per_class_accuracy"] = _renamed(result["per_class_accuracy"], background)
        return result
    return _eval_classic(args, VOCSegmentation(args.root, args.split, classes=classes), background)


def _renamed(per_class: dict, background: str) -> dict:
    return {(background if k == "background" and i == 0 else k): v for i, (k, v) in enumerate(per_class.items())}


def _eval_seg_files(args: argparse.Namespace, background: str, classes: list[str] | None) -> dict:
    from visiontasks.evaluation.seg_files import score_label_pngs
    from visiontasks.evaluation.voc.ground_truth import DEFAULT_CLASSES

    return score_label_pngs(args.root, args.split, args.predictions, [background, *(classes or DEFAULT_CLASSES)])


def _eval_classic(args: argparse.Namespace, dataset, background: str) -> dict:
    from tqdm import tqdm

    from visiontasks.classic import gt_to_fg_bg, segment_classic
    from visiontasks.data import read_image
    from visiontasks.evaluation.segmentation import SegmentationEvaluator

    names = [background, *dataset.classes] if args.oracle_labels else [background, "foreground"]
    evaluator = SegmentationEvaluator(len(names))
    save = _saver(args)
    with tqdm(range(len(dataset)), desc=args.method, leave=False) as bar:
        for i in bar:
            rgb = read_image(dataset.image_path(i)).permute(1, 2, 0).numpy()  # uint8 as decoded, no float round trip
            target = dataset.get_annotation(i)
            gt = target["mask"].numpy()
            pred = segment_classic(args.method, rgb, gt=gt, oracle=args.oracle_labels)
            evaluator.update(pred, gt if args.oracle_labels else gt_to_fg_bg(gt))
            if save:
                save(pred, target)
    return segmentation_result(evaluator.compute(), names)


def _pct(value: float | None) -> str:
    return "   n/a" if value is None or np.isnan(value) else f"{100 * value:6.2f}"


def eval_proposals(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visiontasks.detection.proposals import read_manifest, read_proposals, read_timing
    from visiontasks.evaluation import plot_recall_vs_proposals, proposal_recall, recall_vs_proposals
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth

    params = read_manifest(args.proposals)["params"]
    dataset = load_detection_ground_truth(args.root, args.split, _det_classes(args.classes))
    props = []
    with tqdm(dataset.ids, desc="read", leave=False) as bar:  # closed (line cleared) before an error is printed
        for image_id in bar:
            props.append(read_proposals(args.proposals, image_id).numpy())
    gt = (dataset.boxes, dataset.labels, dataset.difficult)
    res = proposal_recall(props, *gt, top_n=args.top_n)
    timing = read_timing(args.proposals)
    seconds = [timing[i] for i in dataset.ids if i in timing]
    result = {k: res[k] for k in ("recall_50", "recall_70", "average_recall", "mabo", "boxes_per_image")}
    result["seconds_per_image"] = float(np.mean(seconds)) if seconds else None
    result = {k: None if v is None or np.isnan(v) else v for k, v in result.items()}
    print(f"proposals {args.proposals}: {', '.join(f'{k}={v!r}' for k, v in params.items())}")
    print(f"{res['num_images']} images, {res['num_gt']} ground-truth boxes (difficult excluded)")
    for name, key in (("recall@0.5", "recall_50"), ("recall@0.7", "recall_70"), ("average recall", "average_recall"),
                      ("MABO", "mabo")):
        print(f"{name:>16s}  {_pct(result[key])}")
    print(f"{'boxes / image':>16s}  {result['boxes_per_image']:8.1f}")
    timed = f"{result['seconds_per_image']:.2f}" if seconds else "n/a"
    print(f"{'seconds / image':>16s}  {timed} (the proposer alone; {len(seconds)} of {len(dataset.ids)} images timed)")
    curve = recall_vs_proposals(props, *gt, counts=[n for n in (10, 20, 50, 100, 200, 500, 1000, 2000)
                                                    if args.top_n is None or n < args.top_n] + [args.top_n])
    print(f"\n{'top N':>6s} {'boxes/img':>9s} {'R@0.5':>6s} {'R@0.7':>6s} {'AR':>6s} {'MABO':>6s}")
    for j, n in enumerate(curve["counts"]):
        vals = " ".join(_pct(curve[k][j]) for k in ("recall_50", "recall_70", "average_recall", "mabo"))
        print(f"{'all' if n is None else n:>6} {curve['boxes_per_image'][j]:9.1f} {vals}")
    if args.plot:
        plot_recall_vs_proposals(curve, args.plot, title=f"{params.get('method')} {params.get('mode', '')} on "
                                                         f"{Path(args.root).name} {args.split}")
        print(f"wrote {args.plot}")
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.task == "proposals":
        return eval_proposals(args)
    result = eval_det(args) if args.task == "det" else eval_seg(args)
    if args.task == "det" and getattr(args, "pr_curves", None) and "curves" in result:
        from visiontasks.evaluation import plot_pr_curves

        plot_pr_curves(result["curves"], list(result["per_class"]), args.pr_curves)
    if result.get("summary"):
        print(result["summary"])
    result = public_metrics(result)
    print(format_metrics(result))
    warn_undefined(result, _where(args))
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
