"""Proposal recall, average recall and MABO against a hand-computed table."""
from __future__ import annotations

import numpy as np
import pytest

from visiontasks.evaluation import (AR_THRESHOLDS, best_overlaps, plot_recall_vs_proposals, proposal_recall,
                                    recall_vs_proposals)

# Two images, three scored ground-truth boxes (pixel-inclusive IoUs, worked by hand):
#   image A: gt1 [0,0,9,9] (100 px, class 1), gt2 [20,20,29,29] (100 px, class 2)
#     p1 [0,0,9,4]:   gt1 50/100 = 0.5
#     p2 [20,20,29,27]: gt2 80/100 = 0.8
#     p3 [0,0,9,8]:   gt1 90/100 = 0.9
#   image B: gt3 [0,0,19,9] (200 px, class 1), gt4 [50,50,59,59] difficult (class 2, not scored)
#     q1 [0,0,19,5]:  gt3 120/200 = 0.6
#     q2 [50,50,59,59]: the difficult box exactly (would add a perfect match if it were scored)
PROPS = [np.array([[0, 0, 9, 4], [20, 20, 29, 27], [0, 0, 9, 8]], np.float32),
         np.array([[0, 0, 19, 5], [50, 50, 59, 59]], np.float32)]
GT = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]], np.float32), np.array([[0, 0, 19, 9], [50, 50, 59, 59]], np.float32)]
LABELS = [np.array([1, 2]), np.array([1, 2])]
DIFFICULT = [np.array([False, False]), np.array([False, True])]

# best overlaps (gt1, gt2, gt3) with the first N proposals of each image, and the figures by hand:
#   all: 0.9, 0.8, 0.6 -> R@.5 3/3, R@.7 2/3; boxes >= t for t = .50 .55 ... .95: 3 3 3 2 2 2 2 1 1 0 -> AR 19/30;
#        ABO class 1 (0.9 + 0.6)/2 = 0.75, class 2 0.8 -> MABO 0.775; boxes per image (3 + 2)/2 = 2.5
#   N=1: 0.5, 0.0, 0.6 -> R@.5 2/3, R@.7 0; 2 1 1 0 ... -> AR 4/30; ABO 0.55, 0.0 -> MABO 0.275; 1 box/image
#   N=2: 0.5, 0.8, 0.6 -> R@.5 3/3, R@.7 1/3; 3 2 2 1 1 1 1 0 0 0 -> AR 11/30; ABO 0.55, 0.8 -> 0.675; 2 boxes
TABLE = {
    None: dict(recall_50=1.0, recall_70=2 / 3, average_recall=19 / 30, mabo=0.775, boxes_per_image=2.5),
    1: dict(recall_50=2 / 3, recall_70=0.0, average_recall=4 / 30, mabo=0.275, boxes_per_image=1.0),
    2: dict(recall_50=1.0, recall_70=1 / 3, average_recall=11 / 30, mabo=0.675, boxes_per_image=2.0),
}


def test_best_overlaps_are_pixel_inclusive():
    np.testing.assert_allclose(best_overlaps(PROPS[0], GT[0]), [0.9, 0.8])
    # continuous coordinates would give 9*4 / (9*9) = 0.444 for p1 alone
    assert best_overlaps(PROPS[0][:1], GT[0][:1])[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(best_overlaps(np.zeros((0, 4)), GT[0]), [0.0, 0.0])


def test_ar_thresholds():
    np.testing.assert_allclose(AR_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])


@pytest.mark.parametrize("top_n", [None, 1, 2])
def test_proposal_recall_matches_hand_table(top_n):
    res = proposal_recall(PROPS, GT, LABELS, DIFFICULT, iou_thresholds=(0.5, 0.6, 0.7), top_n=top_n)
    for key, want in TABLE[top_n].items():
        assert res[key] == pytest.approx(want, abs=1e-12), key
    assert res["num_gt"] == 3 and res["num_images"] == 2
    assert res["recall"][0.6] == pytest.approx({None: 3 / 3, 1: 1 / 3, 2: 2 / 3}[top_n])  # 0.6 >= 0.6 counts


def test_difficult_boxes_are_left_out():
    with_difficult = proposal_recall(PROPS, GT, LABELS)  # gt4 scored: matched exactly by q2
    assert with_difficult["num_gt"] == 4
    assert with_difficult["mabo"] == pytest.approx((0.75 + (0.8 + 1.0) / 2) / 2)
    assert proposal_recall(PROPS, GT, LABELS, DIFFICULT)["mabo"] == pytest.approx(0.775)


def test_recall_vs_proposals_equals_top_n_runs(tmp_path):
    curve = recall_vs_proposals(PROPS, GT, LABELS, DIFFICULT, counts=[1, 2, 10, None])
    assert curve["counts"] == [1, 2, 10, None]
    for j, n in enumerate([1, 2, None, None]):  # 10 > every image's count: all of them
        for key, want in TABLE[n].items():
            assert curve[key][j] == pytest.approx(want, abs=1e-12), (key, n)
    png = plot_recall_vs_proposals(curve, tmp_path / "sub" / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_ground_truth_is_nan_and_bad_input_is_named():
    res = proposal_recall([PROPS[0]], [np.zeros((0, 4))], [np.zeros(0)])
    assert np.isnan(res["recall_50"]) and np.isnan(res["mabo"]) and res["boxes_per_image"] == 3
    with pytest.raises(ValueError, match="lengths"):
        proposal_recall(PROPS, GT[:1], LABELS)
    with pytest.raises(ValueError, match=r"image 0 .*\(3, 3\)"):
        proposal_recall([PROPS[0][:, :3]], GT[:1], LABELS[:1])
    with pytest.raises(ValueError, match="counts"):
        recall_vs_proposals(PROPS, GT, LABELS, counts=[0])


# --- the selective-search table (visiontasks/detection/proposals/table.py) ---------------------------------------


def test_cap_like_cuts_each_image_to_the_reference_count():
    from visiontasks.detection.proposals.table import cap_like

    cut = cap_like(PROPS, [np.zeros((1, 4)), np.zeros((5, 4))])  # image A to 1 box; B has 2 < 5: both kept
    assert [len(c) for c in cut] == [1, 2]
    res = proposal_recall(cut, GT, LABELS, DIFFICULT)  # gt1 0.5 (p1), gt2 0, gt3 0.6: as the N=1 row
    for key in ("recall_50", "recall_70", "average_recall", "mabo"):
        assert res[key] == pytest.approx(TABLE[1][key], abs=1e-12), key
    with pytest.raises(ValueError, match="same images"):
        cap_like(PROPS, PROPS[:1])


def test_measure_proposals_scores_and_times_the_named_proposer(monkeypatch):
    import importlib

    from visiontasks.detection.proposals.table import measure_proposals

    ss_mod = importlib.import_module("visiontasks.detection.proposals.selective_search")  # the module, not the function

    calls = []

    def fake(image, which: int = 0):
        calls.append(int(image[0, 0, 0]))
        return PROPS[int(image[0, 0, 0])]

    monkeypatch.setitem(ss_mod.PROPOSAL_METHODS, "fake", fake)
    images = [lambda: np.zeros((4, 4, 3), np.uint8), lambda: np.ones((4, 4, 3), np.uint8)]
    res = measure_proposals(images, GT, LABELS, DIFFICULT, {"method": "fake"})
    assert calls == [0, 1]
    for key, want in TABLE[None].items():
        assert res[key] == pytest.approx(want, abs=1e-12), key
    assert res["seconds_per_image"] >= 0 and res["params"] == {"method": "fake"}
    assert [len(p) for p in res["proposals"]] == [3, 2]


def test_table_prints_measured_rows_then_the_papers():
    from visiontasks.detection.proposals.table import format_proposal_table

    row = dict(label="paper", boxes_per_image=2500.4, recall_50=0.8261, recall_70=0.5, average_recall=0.45,
               mabo=0.81, seconds_per_image=3.214)
    lines = format_proposal_table([row], title="coco128-voc test: 2 images").splitlines()
    assert lines[0] == "coco128-voc test: 2 images"
    assert lines[1].split() == ["boxes/img", "R@0.5", "R@0.7", "AR", "MABO", "s/img"]
    assert lines[3].split() == ["paper", "2500", "0.826", "0.500", "0.450", "0.810", "3.21"]
    assert lines[4].split() == ["Uijlings", "2013", "VOC07", "fast", "2134", "0.980", "-", "-", "0.804", "-"]
    assert lines[5].split() == ["Uijlings", "2013", "VOC07", "quality", "10097", "0.991", "-", "-", "0.879", "-"]
