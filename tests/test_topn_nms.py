"""topn_nms: the first n boxes of greedy NMS, from growing prefixes (visiontasks/detection/topn_nms.py)."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from visiontasks.detection.topn_nms import topn_nms


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_hand_built_prefix_suffices():
    # 16 boxes, scores falling; box i overlaps only box i+1 (width 2, shift 1: IoU 1/3).
    # n = 2: the prefix is the first 8 boxes, which keep 0, 2, 4, 6: the first two are the answer.
    boxes = _boxes([[i, 0, i + 2, 1] for i in range(16)])
    scores = torch.linspace(1.0, 0.1, 16)
    assert topn_nms(boxes, scores, 0.3, 2).tolist() == [0, 2]
    assert topn_nms(boxes, scores, 0.5, 2).tolist() == [0, 1]  # IoU 1/3 <= 0.5: nothing dropped


def test_hand_built_prefix_too_short_falls_back_to_all_boxes():
    # 12 copies of one box, then 4 disjoint boxes: the prefix of 8 keeps only box 0, so n = 2 needs all 16.
    boxes = _boxes([[0, 0, 10, 10]] * 12 + [[20 * k, 50, 20 * k + 5, 55] for k in range(1, 5)])
    scores = torch.linspace(1.0, 0.1, 16)
    assert topn_nms(boxes, scores, 0.5, 2).tolist() == [0, 12]
    assert topn_nms(boxes, scores, 0.5, 1).tolist() == [0]  # n = 1: prefix of 4 suffices


def test_without_room_for_a_prefix_it_is_nms_then_cut():
    boxes = _boxes([[i, 0, i + 2, 1] for i in range(6)])  # 8n > N for n >= 1
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert topn_nms(boxes, scores, 0.3, 10).tolist() == [0, 2, 4]  # fewer kept than asked
    assert topn_nms(boxes, scores, 0.3, 1).tolist() == [0]


def test_unsorted_scores_and_ties_are_ordered_stably():
    # n = 1, N = 8: the prefix path. Boxes 0 and 2 coincide and tie at the top score: the first one wins.
    boxes = _boxes([[0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1]] + [[9 + k, 9, 10 + k, 10] for k in range(5)])
    scores = torch.tensor([0.9, 0.2, 0.9, 0.5, 0.4, 0.3, 0.1, 0.05])
    assert topn_nms(boxes, scores, 0.5, 1).tolist() == [0]


@pytest.mark.parametrize("seed", range(5))
def test_equals_torchvision_nms_then_cut_on_random_boxes(seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(40):
        count = int(torch.randint(0, 600, (1,), generator=g))
        xy = torch.rand(count, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + torch.rand(count, 2, generator=g) * 60 + 1], 1)
        scores = torch.rand(count, generator=g)  # no ties
        thresh = float(torch.rand(1, generator=g)) * 0.9 + 0.05
        n = int(torch.randint(0, 400, (1,), generator=g))
        assert torch.equal(topn_nms(boxes, scores, thresh, n), nms(boxes, scores, thresh)[:n])


def test_empty_and_bad_n():
    assert topn_nms(torch.zeros(0, 4), torch.zeros(0), 0.7, 300).shape == (0,)
    assert topn_nms(_boxes([[0, 0, 1, 1]]), torch.ones(1), 0.7, 0).shape == (0,)
    with pytest.raises(ValueError, match="-1"):
        topn_nms(_boxes([[0, 0, 1, 1]]), torch.ones(1), 0.7, -1)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_graphs_keep_the_whole_nms():
    """A trace records one branch; traced on inputs the prefix serves, it must still answer inputs it does not."""
    spread = _boxes([[20 * k, 0, 20 * k + 5, 5] for k in range(16)])  # disjoint: the prefix of 8 suffices
    copies = _boxes([[0, 0, 10, 10]] * 12 + [[20 * k, 50, 20 * k + 5, 55] for k in range(1, 5)])
    scores = torch.linspace(1.0, 0.1, 16)
    traced = torch.jit.trace(lambda b, s: topn_nms(b, s, 0.5, 2), (spread, scores), check_trace=False)
    assert traced(copies, scores).tolist() == [0, 12] == nms(copies, scores, 0.5)[:2].tolist()
