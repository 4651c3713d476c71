"""TIDE's detection error breakdown (Bolya et al., ECCV 2020), equal to ``tidecv``'s figures, vectorised (torch-free).

Definitions, thresholds and AP are TIDE's own (``tidecv`` 1.0.1, ``tidecv/quantify.py``):

* per image, detections in descending score order (ties keep input order), at most ``max_dets``
  (100); each takes the unused ground truth of its class with the largest IoU (the first on ties)
  when that IoU is ``>= pos_thresh`` (0.5) — COCO's greedy matching, which differs from the VOC
  devkit's (there a detection whose best box is taken is a duplicate even when another box of
  its class overlaps it enough);
* ignore regions (VOC's difficult objects, COCO's crowds): an unmatched detection of their class
  whose intersection over its own area is ``> pos_thresh`` is left out of the AP;
* every unmatched detection (ignored ones included, as in TIDE) gets the first error that fits:
  no ground truth in the image → **bkg**; same-class IoU in ``[bg_thresh, pos_thresh]`` with
  some box → **loc**; IoU ``>= pos_thresh`` with a box of another class → **cls**; IoU
  ``>= pos_thresh`` with a same-class box already matched → **dupe**; IoU ``<= bg_thresh``
  (0.1) with every box → **bkg**; otherwise **both**; unmatched ground truth that no cls/loc
  error points at → **miss**;
* AP is TIDE's: per class, the COCO-style 101-point interpolated AP (precision made monotone,
  sampled at recall 0, 0.01, …, 1 with ``searchsorted(..., side="left")``); a class with
  detections but no ground truth scores 0 and counts in the mean, a class with neither does not;
* each main error's figure is the AP gained by fixing that type alone (TIDE's oracles: a cls or
  loc error becomes a true positive of the right class, only the highest-scored of the errors
  pointing at the same unmatched box — the others are dropped; dupe, bkg and both detections
  are dropped; a miss leaves the ground-truth count), clamped at 0; **false_pos** is the AP with
  every false positive scored below every true positive, **false_neg** the AP with every
  unmatched box removed from the count (both as differences, not clamped).

TIDE builds the AP lists in its own order (errors first, then true positives), which decides ties
of equal scores; the same order is kept here, so tied scores give TIDE's figures too.

How it is fast: IoUs are computed only for (detection, box) pairs of the same image, in one pass,
and the greedy matching runs one vectorised step per score rank (:mod:`.box_match`); the error
cascade and the oracle runs are array operations, with one loop over classes per AP.

Shape shorthand: N = images; D_i, G_i = detections and ground-truth boxes of image i; D, G = all
of them; P = (detection, box) pairs of the same image.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from visiontasks.evaluation.box_match import (FORMATS, crowd_iou, greedy_match, pair_iou, same_image_pairs,
                                              segment_max, stack, to_xywh)

__all__ = ["tide_errors", "format_tide", "MAIN_ERRORS", "SPECIAL_ERRORS", "REPORTED", "POS_THRESH", "BG_THRESH",
           "MAX_DETS"]

POS_THRESH = 0.5
BG_THRESH = 0.1
MAX_DETS = 100
MAIN_ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")
SPECIAL_ERRORS = ("false_pos", "false_neg")
#: The keys of :func:`tide_errors`' result that the tools write (all fractions; ``counts`` is not).
REPORTED = ("ap50", "main", "special")
_SHORT = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "miss": "Miss",
          "false_pos": "FalsePos", "false_neg": "FalseNeg"}
_X101 = np.arange(101) / 100  # TIDE's recall points x / 100


def _ap_table(cls: np.ndarray, group: np.ndarray, tp: np.ndarray, key: np.ndarray, npos: np.ndarray) -> float:
    """TIDE's mAP (in percent) of AP entries: ``ClassedAPDataObject.get_mAP`` (0 when no class is left, where
    tidecv divides by zero).

    Args:
        cls, group, tp, key: per entry its class, its score's rank among the distinct scores (0 =
            highest), whether it is a true positive and its place in TIDE's push order (ties of
            equal scores keep it).
        npos: (C + 1,) ground-truth count per class.
    """
    width = int(key.max(initial=0)) + 1
    order = np.argsort((cls * (int(group.max(initial=0)) + 1) + group) * width + key)  # one int64 key, unique
    cls, tp = cls[order], tp[order]
    bounds = np.searchsorted(cls, np.arange(len(npos) + 1))
    aps = []
    for c in range(len(npos)):
        lo, hi = bounds[c], bounds[c + 1]
        if hi == lo and npos[c] == 0:
            continue  # an empty class is left out of the mean
        if npos[c] == 0:
            aps.append(0.0)
            continue
        hits = np.cumsum(tp[lo:hi])
        precision = np.maximum.accumulate((hits / np.arange(1, hi - lo + 1))[::-1])[::-1]
        idx = np.searchsorted(hits / npos[c], _X101, side="left")
        y = np.zeros(len(_X101))
        y[idx < len(precision)] = precision[idx[idx < len(precision)]]
        aps.append(float(np.cumsum(y)[-1]) / len(_X101) * 100)
    return float(sum(aps) / len(aps)) if aps else 0.0


def tide_errors(
    pred_boxes: Sequence[Any],
    pred_labels: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    gt_labels: Sequence[Any],
    gt_ignore: Sequence[Any] | None = None,
    box_format: str = "voc",
    pos_thresh: float = POS_THRESH,
    bg_thresh: float = BG_THRESH,
    max_dets: int = MAX_DETS,
    per_detection: bool = False,
) -> dict[str, Any]:
    """TIDE's error breakdown of per-image detections against per-image ground truth.

    ===============  =============  =============================================
    name             shape          meaning
    ===============  =============  =============================================
    pred_boxes[i]    (D_i, 4)       boxes in ``box_format``
    pred_labels[i]   (D_i,)         int class ids (any non-negative ints)
    pred_scores[i]   (D_i,)         float
    gt_boxes[i]      (G_i, 4)       boxes in ``box_format``
    gt_labels[i]     (G_i,)         int class ids
    gt_ignore[i]     (G_i,)         bool: an ignore region (difficult, crowd)
    ===============  =============  =============================================

    Args:
        box_format: ``"voc"`` (``xyxy`` 0-based inclusive pixels: widths ``x1 - x0 + 1``, the
            devkit's overlap), ``"xyxy"`` (continuous corners) or ``"xywh"`` (COCO).
        pos_thresh: foreground IoU (TIDE: 0.5).
        bg_thresh: background IoU (TIDE: 0.1).
        max_dets: detections kept per image, the highest-scored (TIDE: 100).
        per_detection: also say which detection got which error and which boxes were missed (for
            a report's gallery; the figures are the same either way).

    Returns:
        ``{"ap50", "main": {cls, loc, both, dupe, bkg, miss}, "special": {false_pos, false_neg},
        "counts": {error type: number}}``; AP and its gains as fractions in [0, 1] (TIDE prints
        them in percent). With ``per_detection``, also ``"detections"``: ``{"image", "index"}``
        (D,) int arrays (image and row of each kept detection in the input), ``"error"`` (D,) str
        (``"tp"`` or a main error name), ``"ignored"`` (D,) bool (left out of the AP: inside an
        ignore region), ``"gt"`` (D,) int (the box a loc/cls error points at, as its row in the
        image's ground truth; -1 otherwise); and ``"missed": {"image", "index"}`` of the boxes
        counted as **miss**.
    """
    if box_format not in FORMATS:
        raise ValueError(f"box_format must be one of {FORMATS}, got {box_format!r}")
    n = len(gt_boxes)
    if not len(pred_boxes) == len(pred_labels) == len(pred_scores) == n:
        raise ValueError(f"per-image lists differ in length: {len(pred_boxes)}, {len(pred_labels)}, "
                         f"{len(pred_scores)} predictions and {n} ground truths")
    pb, p_img = stack(pred_boxes, 4, np.float64)
    pl, _ = stack(pred_labels, None, np.int64)
    ps, _ = stack(pred_scores, None, np.float64)
    gb, g_img = stack(gt_boxes, 4, np.float64)
    gl, _ = stack(gt_labels, None, np.int64)
    gi = stack(gt_ignore, None, bool)[0] if gt_ignore is not None else np.zeros(len(gl), bool)
    if not len(pb) == len(pl) == len(ps) or not len(gb) == len(gl) == len(gi):
        raise ValueError("boxes, labels and scores (or ignore flags) of an image differ in length")
    # per image: descending score, ties in input order, the first max_dets
    order = np.lexsort((np.arange(len(ps)), -ps, p_img))
    start = np.searchsorted(p_img[order], np.arange(n))
    rank = np.arange(len(order)) - start[p_img[order]]
    order, rank = order[rank < max_dets], rank[rank < max_dets]
    pb, pl, ps, p_img = to_xywh(pb[order], box_format), pl[order], ps[order], p_img[order]
    num = len(ps)  # detection d is the d-th in TIDE's (image, rank) order from here on
    real, ign = ~gi, gi
    g_box, g_lab, g_img_r = to_xywh(gb[real], box_format), gl[real], g_img[real]
    pa, pg = same_image_pairs(p_img, g_img_r, n)
    iou = pair_iou(pb[pa], g_box[pg])
    same = pl[pa] == g_lab[pg]
    matched = greedy_match(pa, pg, rank, iou * same, len(g_lab), num, pos_thresh)
    used = np.zeros(len(g_lab), bool)
    used[matched[matched >= 0]] = True
    ignored = _ignored(pb, pl, p_img, gb[ign], gl[ign], g_img[ign], matched, n, box_format, pos_thresh)
    kind, target = _classify(pa, pg, iou, same, used, matched, p_img, g_img_r, n, num, pos_thresh, bg_thresh)
    result, missed = _breakdown(pl, ps, g_lab, matched, used, ignored, kind, target, num)
    if per_detection:
        p_start = np.concatenate(([0], np.cumsum([len(np.asarray(s).reshape(-1)) for s in pred_scores])))
        g_start = np.concatenate(([0], np.cumsum([len(np.asarray(g).reshape(-1)) for g in gt_labels])))
        g_row = np.flatnonzero(real)  # row in the concatenated ground truth of each real box
        names = np.array(["tp", "bkg", "loc", "cls", "dupe", "both"])  # indexed by the _TP.._BOTH codes
        safe = np.maximum(target, 0) if len(g_row) else np.zeros(0, np.int64)
        box = np.where(target >= 0, g_row[safe] - g_start[g_img_r[safe]], -1) if len(g_row) else target
        result["detections"] = {"image": p_img, "index": order - p_start[p_img], "error": names[kind],
                                "ignored": ignored & (kind != _TP), "gt": box}
        result["missed"] = {"image": g_img_r[missed], "index": g_row[missed] - g_start[g_img_r[missed]]}
    return result


def _ignored(pb: np.ndarray, pl: np.ndarray, p_img: np.ndarray, ib: np.ndarray, il: np.ndarray, i_img: np.ndarray,
             matched: np.ndarray, n: int, box_format: str, pos_thresh: float) -> np.ndarray:
    """(D,) unmatched detections inside an ignore region of their class (crowd IoU ``> pos_thresh``)."""
    out = np.zeros(len(pl), bool)
    pa, pr = same_image_pairs(p_img, i_img, n)
    if len(pa):
        crowd = crowd_iou(pb[pa], to_xywh(ib, box_format)[pr])
        hit = (matched[pa] < 0) & (crowd > pos_thresh) & ((il[pr] == pl[pa]) | (il[pr] == -1))
        out[pa[hit]] = True
    return out


(_TP, _BKG, _LOC, _CLS, _DUPE, _BOTH) = range(6)


def _classify(pa: np.ndarray, pg: np.ndarray, iou: np.ndarray, same: np.ndarray, used: np.ndarray,
              matched: np.ndarray, p_img: np.ndarray, g_img: np.ndarray, n: int, num: int, pos_thresh: float,
              bg_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """(D,) error kind of each detection (``_TP`` when matched) and the box a loc/cls error points at."""
    cls_max, cls_arg = segment_max(np.where(same, iou, 0.0), pa, num)
    other_max, other_arg = segment_max(np.where(same, 0.0, iou), pa, num)
    dupe_max, _ = segment_max(np.where(same & used[pg], iou, 0.0), pa, num)
    any_max, _ = segment_max(iou, pa, num)
    has_gt = np.bincount(g_img, minlength=n)[p_img] > 0
    kind = np.full(num, _TP)
    rest = matched < 0
    kind[rest & ~has_gt] = _BKG
    rest &= has_gt
    for code, test in ((_LOC, (bg_thresh <= cls_max) & (cls_max <= pos_thresh)), (_CLS, other_max >= pos_thresh),
                       (_DUPE, dupe_max >= pos_thresh), (_BKG, any_max <= bg_thresh), (_BOTH, np.ones(num, bool))):
        kind[rest & test] = code
        rest &= ~test
    target = np.full(num, -1)
    target[kind == _LOC] = pg[cls_arg[kind == _LOC]]
    target[kind == _CLS] = pg[other_arg[kind == _CLS]]
    return kind, target


def _breakdown(pl: np.ndarray, ps: np.ndarray, g_lab: np.ndarray, matched: np.ndarray, used: np.ndarray,
               ignored: np.ndarray, kind: np.ndarray, target: np.ndarray,
               num: int) -> tuple[dict[str, Any], np.ndarray]:
    """The baseline AP, the oracle runs and the counts; and which real boxes count as missed."""
    num_classes = int(max(pl.max(initial=-1), g_lab.max(initial=-1))) + 1
    npos = np.bincount(g_lab, minlength=num_classes)
    det = np.arange(num)
    group = np.unique(-ps, return_inverse=True)[1].reshape(-1)  # 0 = the highest score; ties share a group
    tp = matched >= 0
    # cls/loc errors pointing at an unmatched box: only the highest-scored one per box is fixed (BestGTMatch)
    points = np.flatnonzero(((kind == _LOC) | (kind == _CLS)) & (target >= 0))
    points = points[~used[target[points]]]
    usable = np.zeros(len(g_lab), bool)
    usable[target[points]] = True
    fixable = np.zeros(num, bool)
    if len(points):
        ranked = points[np.lexsort((points, -ps[points], target[points]))]
        fixable[ranked[np.concatenate(([True], target[ranked][1:] != target[ranked][:-1]))]] = True
    missed = ~used & ~usable
    shown = ~ignored  # what TIDE pushes into its AP lists: the detections not ignored
    base = _ap_table(pl[shown], group[shown], tp[shown], det[shown], npos)
    errs = ~tp & shown  # error entries, unfixed; pushed before the true positives in a fixed run

    def fixed_run(fix: np.ndarray | None, as_class: np.ndarray | None, drop: np.ndarray | None,
                  pos: np.ndarray = npos) -> float:
        keep = errs.copy()
        if drop is not None:
            keep &= ~drop
        cls, score, hit, key = [pl[keep]], [group[keep]], [np.zeros(int(keep.sum()), bool)], [det[keep]]
        if fix is not None:
            cls.append(as_class[fix])
            score.append(group[fix])
            hit.append(np.ones(int(fix.sum()), bool))
            key.append(det[fix])
        cls += [pl[tp]]
        score += [group[tp]]
        hit += [np.ones(int(tp.sum()), bool)]
        key += [num + det[tp]]
        cat = [np.concatenate(x) for x in (cls, score, hit, key)]
        return _ap_table(*cat, pos)

    gt_class = np.where(target >= 0, g_lab[np.maximum(target, 0)], -1) if len(g_lab) else target
    main = {}
    for name, code in (("cls", _CLS), ("loc", _LOC)):
        own = kind == code
        main[name] = fixed_run(own & fixable, gt_class if code == _CLS else pl, own)
    for name, code in (("both", _BOTH), ("dupe", _DUPE), ("bkg", _BKG)):
        main[name] = fixed_run(None, None, kind == code)
    main["miss"] = fixed_run(None, None, None, npos - np.bincount(g_lab[missed], minlength=num_classes))
    main = {k: max(v - base, 0.0) / 100 for k, v in main.items()}
    # every false positive scored 0 and every true positive 1 (FalsePositiveError.fix)
    false_pos = _ap_table(np.concatenate([pl[errs], pl[tp]]), np.concatenate([np.ones(int(errs.sum()), np.int64),
                                                                               np.zeros(int(tp.sum()), np.int64)]),
                          np.concatenate([np.zeros(int(errs.sum()), bool), np.ones(int(tp.sum()), bool)]),
                          np.concatenate([det[errs], num + det[tp]]), npos)
    false_neg = fixed_run(None, None, None, npos - np.bincount(g_lab[~used], minlength=num_classes))
    counts = {name: int((kind == code).sum()) for name, code in
              (("cls", _CLS), ("loc", _LOC), ("both", _BOTH), ("dupe", _DUPE), ("bkg", _BKG))}
    counts["miss"] = int(missed.sum())
    return {"ap50": base / 100, "main": main,
            "special": {"false_pos": (false_pos - base) / 100, "false_neg": (false_neg - base) / 100},
            "counts": counts}, missed


def _table(rows: list[list[str]], title: str) -> list[str]:
    """``tidecv.plotting.print_table``'s layout."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    divider = "--" + "---".join("-" * w for w in widths) + "-"
    thick = divider.replace("-", "=")
    pad = (len(divider) - len(title)) // 2
    lines = [f"{title:>{pad + len(title)}s}", thick]
    for k, row in enumerate(rows):
        lines.append("  " + "   ".join(f"{cell:>{w}s}" for cell, w in zip(row, widths)) + "  ")
        if k == 0:
            lines.append(divider)
    return lines + [thick]


def format_tide(result: dict[str, Any], name: str = "detections", pos_thresh: float = POS_THRESH) -> str:
    """The breakdown printed as TIDE's ``summarize`` prints it (figures in percent)."""
    lines = [f"-- {name} --", "", f"bbox AP @ {int(pos_thresh * 100):d}: {100 * result['ap50']:.2f}", ""]
    lines += _table([["Type"] + [_SHORT[k] for k in MAIN_ERRORS],
                     [" dAP"] + [f"{100 * result['main'][k]:6.2f}" for k in MAIN_ERRORS]], "Main Errors")
    lines.append("")
    lines += _table([["Type"] + [_SHORT[k] for k in SPECIAL_ERRORS],
                     [" dAP"] + [f"{100 * result['special'][k]:6.2f}" for k in SPECIAL_ERRORS]], "Special Error")
    return "\n".join(lines)
