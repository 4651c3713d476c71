"""Score detections or segmentations against a VOC-layout (or COCO) ground truth.

Detection::

    python tools/eval.py det --root VOC2007 --split test --detections DIR --metric voc07 [--out r.json]
    python tools/eval.py det --metric coco --images DIR --annotations gt.json --detections dets.json
    python tools/eval.py det --checkpoint runs/x/checkpoint_last.pt --root VOC2007 --split test \\
        [--write-results DIR]          # also writes VOC comp4 files for the official server

Segmentation::

    python tools/eval.py seg --root VOC2012 --split val --predictions DIR_OF_PNG [--out r.json]
    python tools/eval.py seg --checkpoint runs/x/checkpoint_last.pt --root VOC2012 --split val
    python tools/eval.py seg --method otsu|adaptive|region_growing|split_merge|edges [--oracle-labels] \\
        --root VOC2012 --split val [--save-predictions DIR]

Region proposals (made by tools/propose.py)::

    python tools/eval.py proposals --root VOC2007 --split test --proposals DIR [--out r.json] [--plot r.png]

Prints a per-class table and writes JSON: ``{"metric", "mAP", "per_class"}`` for detection,
``{"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class"}`` for segmentation (fractions
in [0, 1]; null for a class with nothing to score), ``{"recall_50", "recall_70", "average_recall",
"mabo", "boxes_per_image", "seconds_per_image"}`` for proposals (seconds of the proposer from
DIR/timing.json, null if unknown). Bad input exits 2 with one line naming the file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import run_cli
from tqdm import tqdm

from visiontasks.data import VOCDetection, VOCSegmentation, read_image, read_label_png, save_label_png
from visiontasks.engine.evaluate import evaluate_detection, evaluate_segmentation, segmentation_result
from visiontasks.engine.run import format_metrics, public_metrics, write_json
from visiontasks.errors import InputError
from visiontasks.evaluation import (SegmentationEvaluator, eval_coco, eval_detection_voc, read_voc_results,
                                    write_voc_results)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    det = sub.add_parser("det", help="detection mAP")
    det.add_argument("--root", help="VOC-layout folder (Annotations/, JPEGImages/, ImageSets/)")
    det.add_argument("--split", default="test")
    det.add_argument("--classes", nargs="+", default=None, help="class names (default: VOC's 20)")
    det.add_argument("--detections", help="dir of comp4_det_<split>_<class>.txt files, or a COCO results json")
    det.add_argument("--checkpoint", help="evaluate a trained model instead of results files")
    det.add_argument("--metric", default="voc07", choices=["voc07", "voc12", "coco"])
    det.add_argument("--images", help="COCO images folder (--metric coco)")
    det.add_argument("--annotations", help="COCO annotation json (--metric coco)")
    det.add_argument("--write-results", metavar="DIR", help="with --checkpoint: write VOC comp4 results files")
    det.add_argument("--proposals", metavar="DIR",
                     help="with --checkpoint of a model fed proposals (Fast R-CNN, SPP-net, R-CNN): their folder "
                          "(tools/propose.py); default: computed per image with the model's proposal method")
    det.add_argument("--pr-curves", metavar="PNG", help="draw the per-class PR curves")
    seg = sub.add_parser("seg", help="segmentation mIoU")
    seg.add_argument("--root", required=True, help="VOC-layout folder (SegmentationClass/, ImageSets/Segmentation/)")
    seg.add_argument("--split", default="val")
    seg.add_argument("--classes", nargs="+", default=None)
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
    prop = sub.add_parser("proposals", help="region proposal recall, average recall, MABO")
    prop.add_argument("--root", required=True, help="VOC-layout folder (Annotations/, ImageSets/Main/)")
    prop.add_argument("--split", default="test")
    prop.add_argument("--classes", nargs="+", default=None, help="class names (default: VOC's 20)")
    prop.add_argument("--proposals", required=True, help="folder written by tools/propose.py")
    prop.add_argument("--top-n", type=int, default=None, help="score only the first N proposals of each image")
    prop.add_argument("--out", help="write the result JSON here")
    prop.add_argument("--plot", metavar="PNG", help="draw recall against the number of proposals")
    return parser


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise ValueError(f"{args.task} with these options needs {', '.join(missing)}")


def eval_det(args: argparse.Namespace) -> dict:
    if args.checkpoint:
        return _eval_det_checkpoint(args)
    if args.metric == "coco":
        _need(args, "annotations", "detections")
        stats = eval_coco(args.annotations, args.detections)
        return {"metric": "coco", "mAP": stats["AP"], "per_class": {}, **stats}
    _need(args, "root", "detections")
    dataset = VOCDetection(args.root, args.split, classes=args.classes)
    gts = [dataset.get_annotation(i) for i in range(len(dataset))]
    boxes, labels, scores = read_voc_results(args.detections, args.split, dataset.classes, dataset.ids)
    res = eval_detection_voc(boxes, labels, scores, [g["boxes"].numpy() for g in gts],
                             [g["labels"].numpy() for g in gts], [g["difficult"].numpy() for g in gts],
                             num_classes=len(dataset.classes), metric=args.metric)
    return {"metric": args.metric, "mAP": float(res["map"]),
            "per_class": dict(zip(dataset.classes, map(float, res["ap"]))), "curves": res}


def _load(args: argparse.Namespace):
    import visiontasks

    return visiontasks.load_model(args.checkpoint, device=args.device, preset="evaluate")


def _eval_det_checkpoint(args: argparse.Namespace) -> dict:
    predictor = _load(args)
    if args.metric == "coco":
        from visiontasks.data import COCODetection

        _need(args, "images", "annotations")
        dataset = COCODetection(args.images, args.annotations)
    else:
        _need(args, "root")
        dataset = VOCDetection(args.root, args.split, classes=args.classes or predictor.classes)
    model = predictor.model
    if args.proposals:
        if not getattr(model, "needs_proposals", False):
            raise ValueError(f"--proposals given, but {args.checkpoint} is a model that makes its own proposals")
        from visiontasks.detection.proposals import ProposalStore

        dataset.proposals = ProposalStore(args.proposals, model.proposal_params)
    elif getattr(model, "needs_proposals", False):
        dataset.proposals = _on_the_fly(model, dataset)
    preds: list[dict] = []
    keep = (lambda pred, tgt: preds.append(pred)) if args.write_results else None
    metrics = evaluate_detection(model, dataset, metric=args.metric, device=args.device, on_prediction=keep)
    if args.write_results:
        write_voc_results(args.write_results, args.split, dataset.classes, dataset.ids, preds)
    return metrics


def _on_the_fly(model, dataset):
    """Proposals computed per image with the model's own method (no folder given)."""
    index = {image_id: k for k, image_id in enumerate(dataset.ids)}

    def proposals(image_id: str):
        return model.propose(read_image(dataset.image_path(index[image_id])).float() / 255.0)

    return proposals


def _saver(args: argparse.Namespace):
    if not args.save_predictions:
        return None
    out = Path(args.save_predictions)
    return lambda pred, tgt: save_label_png(out / f"{tgt['image_id']}.png", pred)


def eval_seg(args: argparse.Namespace) -> dict:
    if args.checkpoint:
        predictor = _load(args)
        dataset = VOCSegmentation(args.root, args.split, classes=args.classes or predictor.classes)
        return evaluate_segmentation(predictor.model, dataset, device=args.device, on_prediction=_saver(args))
    dataset = VOCSegmentation(args.root, args.split, classes=args.classes)
    if args.predictions:
        return _eval_seg_files(args, dataset)
    return _eval_classic(args, dataset)


def _eval_seg_files(args: argparse.Namespace, dataset: VOCSegmentation) -> dict:
    names = ["background", *dataset.classes]
    evaluator = SegmentationEvaluator(len(names))
    for i, image_id in enumerate(tqdm(dataset.ids, desc="score", leave=False)):
        gt = dataset.get_annotation(i)["mask"].numpy()
        path = Path(args.predictions) / f"{image_id}.png"
        if not path.is_file():
            raise InputError(path, f"prediction for image {image_id!r} of split {args.split!r} is missing")
        pred = read_label_png(path)
        if pred.shape != gt.shape:
            raise InputError(path, f"mask size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's "
                                   f"{gt.shape[1]}x{gt.shape[0]}")
        bad = np.unique(pred[(pred >= len(names))])
        if bad.size:
            raise InputError(path, f"label values {bad.tolist()} outside 0..{len(names) - 1}")
        evaluator.update(pred, gt)
    return segmentation_result(evaluator.compute(), names)


def _eval_classic(args: argparse.Namespace, dataset: VOCSegmentation) -> dict:
    from visiontasks.classic import gt_to_fg_bg, segment_classic

    names = ["background", *dataset.classes] if args.oracle_labels else ["background", "foreground"]
    evaluator = SegmentationEvaluator(len(names))
    save = _saver(args)
    for i in tqdm(range(len(dataset)), desc=args.method, leave=False):
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
    from visiontasks.detection.proposals import read_manifest, read_proposals, read_timing
    from visiontasks.evaluation import plot_recall_vs_proposals, proposal_recall, recall_vs_proposals

    params = read_manifest(args.proposals)["params"]
    dataset = VOCDetection(args.root, args.split, classes=args.classes)
    gts = [dataset.get_annotation(i) for i in range(len(dataset))]
    props = []
    with tqdm(dataset.ids, desc="read", leave=False) as bar:  # closed (line cleared) before an error is printed
        for image_id in bar:
            props.append(read_proposals(args.proposals, image_id).numpy())
    gt = ([g["boxes"].numpy() for g in gts], [g["labels"].numpy() for g in gts], [g["difficult"].numpy() for g in gts])
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
    print(f"{'seconds / image':>16s}  {timed} (the proposer alone; {len(seconds)} of {len(dataset)} images timed)")
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
    result = public_metrics(result)
    print(format_metrics(result))
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
