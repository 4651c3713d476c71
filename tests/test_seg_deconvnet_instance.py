"""DeconvNet's instance-wise inference: windows, crops, max aggregation (hand-computed maps)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from visiontasks.segmentation.deconvnet.instance_wise import (
    InstanceWiseInference, aggregate_windows, crop_windows, enlarge_windows, paste_max, select_windows,
)


def test_enlarge_windows_scales_about_the_centre():
    # 10 px wide box 10..19 (centre 14.5) -> 12 px: 9..20; 10x5 box at the corner -> 12x6, leaving the image.
    got = enlarge_windows(torch.tensor([[10.0, 10.0, 19.0, 19.0], [0.0, 0.0, 9.0, 4.0]]), 1.2)
    assert got.tolist() == [[9, 9, 20, 20], [-1, 0, 10, 5]]
    assert enlarge_windows(torch.tensor([[3.0, 4.0, 7.0, 8.0]]), 1.0).tolist() == [[3, 4, 7, 8]]


def test_select_windows_skips_small_ones_and_keeps_the_first_n_in_rank_order():
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0],     # 10 px -> 12 px: kept
                          [0.0, 0.0, 4.0, 40.0],    # 5 px wide -> 6 px: skipped (< 10)
                          [5.0, 5.0, 24.0, 14.0],   # 20x10 -> 24x12: kept
                          [0.0, 0.0, 29.0, 29.0]])  # kept by size, but past top_n = 2
    got = select_windows(boxes, top_n=2, enlarge=1.2, min_side=10)
    assert got.tolist() == [[-1, -1, 10, 10], [3, 4, 26, 15]]


def test_paste_max_takes_the_pixelwise_max_of_overlapping_windows_and_drops_what_lies_outside():
    # Image 4 rows x 5 cols, K = 2. Window A rows 0-1 cols 0-2; B rows 1-2 cols 1-3 (overlaps A at
    # row 1, cols 1-2); C rows 2-4 cols -1..1 (a column left of the image and a row below it);
    # D wholly outside. Negative scores lose to the zero start (the released code starts at 0).
    a = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
                      [[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]])
    b = torch.tensor([[[7.0, 1.0, 2.0], [0.5, 0.5, 0.5]],
                      [[2.0, 9.0, 2.0], [2.0, 2.0, 2.0]]])
    c = torch.tensor([[[10.0, 11.0, 12.0], [13.0, 14.0, 15.0], [16.0, 17.0, 18.0]],
                      [[0.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])
    d = torch.full((2, 2, 2), 100.0)
    windows = torch.tensor([[0, 0, 2, 1], [1, 1, 3, 2], [-1, 2, 1, 4], [7, 0, 8, 1]])
    got = paste_max([a, b, c, d], windows, (4, 5))
    expected0 = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0],
                              [4.0, 7.0, 6.0, 2.0, 0.0],   # row 1: A (4,5,6) vs B (7,1,2) -> max
                              [11.0, 12.0, 0.5, 0.5, 0.0],  # C's cols 1-2 at x 0-1; B's row 1 at x 1-3
                              [14.0, 15.0, 0.0, 0.0, 0.0]])
    expected1 = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0],
                              [0.0, 2.0, 9.0, 2.0, 0.0],
                              [0.0, 2.0, 2.0, 2.0, 0.0],   # C's 0 vs B's 2 at x 1
                              [3.0, 0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(got, torch.stack([expected0, expected1]))
    # the overlap pixel (row 1, col 1): A says 5, B says 7 -> 7, not the sum (12) or the mean (6)
    assert got[0, 1, 1] == 7.0


def test_paste_max_refuses_a_map_of_another_size():
    with pytest.raises(ValueError, match="does not fit window"):
        paste_max([torch.zeros(2, 3, 3)], torch.tensor([[0, 0, 3, 2]]), (5, 5))


def test_crop_windows_pads_black_outside_the_image():
    image = (torch.arange(1.0, 13.0).reshape(1, 3, 4) / 12).expand(3, 3, 4)  # 3 rows x 4 cols
    inside = crop_windows(image, torch.tensor([[2, 1, 3, 2]]), size=2)  # a 2x2 window: no resize
    assert torch.equal(inside[0, 0], image[0, 1:3, 2:4])
    corner = crop_windows(image, torch.tensor([[-1, -1, 0, 0]]), size=2)  # 3 of its 4 pixels outside
    assert torch.equal(corner[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1 / 12]]))
    resized = crop_windows(image, torch.tensor([[0, 0, 3, 2], [-4, 0, -1, 2]]), size=5)
    assert resized.shape == (2, 3, 5, 5) and torch.equal(resized[1], torch.zeros(3, 5, 5))


def test_aggregate_windows_resizes_each_map_to_its_window_and_takes_the_max():
    # A stub network scoring window i with a constant VALUES[i] for class 1 and 0.5 for class 0:
    # constant maps stay constant through the bilinear resize, so the result is hand-computable.
    values = [2.0, 1.0, 3.0]
    calls = []

    def network(x: torch.Tensor) -> torch.Tensor:
        first = sum(n for n in calls)
        calls.append(x.shape[0])
        out = torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])
        out[:, 0] = 0.5
        for j in range(x.shape[0]):
            out[j, 1] = values[first + j]
        return out

    image = torch.rand(3, 6, 8)
    windows = torch.tensor([[0, 0, 3, 3], [2, 2, 9, 7], [-2, 4, 1, 9]])
    got = aggregate_windows(network, image, windows, num_classes=2, input_size=4, batch_size=2)
    assert calls == [2, 1]
    expected1 = torch.zeros(6, 8)
    expected1[2:6, 2:8] = 1.0  # window 2 (rows 2-5, cols 2-7 inside the image)
    expected1[0:4, 0:4] = 2.0  # window 1 wins the overlap: max(2, 1), not the last (1), mean (1.5) or sum (3)
    expected1[4:6, 0:2] = 3.0  # window 3: only rows 4-5, cols 0-1 lie inside
    assert torch.allclose(got[1], expected1)
    covered = expected1 > 0
    assert torch.allclose(got[0][covered], torch.full((int(covered.sum()),), 0.5))
    assert torch.equal(got[0][~covered], torch.zeros(int((~covered).sum())))
    # argmax: class 1 under a window, background (index 0 on the all-zero tie) elsewhere
    assert torch.equal(got.argmax(0), covered.long())


def test_instance_inference_uses_the_proposer_ranked_boxes():
    seen = []

    def proposer(image):
        seen.append(tuple(image.shape))
        return [[0, 0, 9, 9], [0, 0, 1, 1], [10, 10, 19, 19]]

    inst = InstanceWiseInference(proposer, top_n=5, enlarge=1.2, min_side=5, input_size=8)
    assert inst.windows(torch.zeros(3, 20, 30)).tolist() == [[-1, -1, 10, 10], [9, 9, 20, 20]]
    assert seen == [(3, 20, 30)]
    with pytest.raises(ValueError, match="top_n"):
        InstanceWiseInference(proposer, top_n=0)


@pytest.mark.slow  # the 252M-parameter network: ~35 s on 2 shared cores
def test_deconvnet_predicts_instance_wise_through_predict():
    from visiontasks.api import Predictor
    from visiontasks.registry import get_model

    torch.manual_seed(0)
    model = get_model("deconvnet", num_classes=3, inference="instance", instance_min_side=10,
                      proposer=lambda image: [[2, 3, 41, 36]])  # one 40x34 box -> 48x41 window
    model.eval()
    image = torch.rand(3, 60, 70)
    with torch.no_grad():
        out = model(image[None])["out"][0]
        window = torch.tensor([[-2, 0, 45, 40]])
        direct = model.network(crop_windows(image, window, 224))
        resized = torch.nn.functional.interpolate(direct, size=(41, 48), mode="bilinear", align_corners=False)[0]
    assert out.shape == (3, 60, 70)
    assert torch.allclose(out[:, 0:41, 0:46], resized[:, :, 2:].clamp(min=0), atol=1e-5)
    assert torch.equal(out[:, 41:], torch.zeros(3, 19, 70)) and torch.equal(out[:, :, 46:], torch.zeros(3, 60, 24))
    model.train()
    assert model(torch.rand(2, 3, 64, 64))["out"].shape == (2, 3, 64, 64)  # training: the full network
    pred = Predictor(model, "segmentation", ["a", "b"])
    mask = pred.predict(image).mask
    assert mask.shape == (60, 70) and int(mask[45:, :].max()) == 0 and int(mask[:, 50:].max()) == 0


def test_deconvnet_refuses_an_unknown_inference_mode():
    from visiontasks.registry import get_model

    with pytest.raises(ValueError, match="model.inference"):
        get_model("deconvnet", num_classes=3, inference="proposals")


def test_no_proposal_gives_an_all_background_map():
    def network(x):
        raise AssertionError("no window: the network must not run")

    inst = InstanceWiseInference(lambda image: np.zeros((0, 4), np.float32), min_side=1)
    scores = inst(network, torch.rand(3, 5, 6), num_classes=4)
    assert torch.equal(scores, torch.zeros(4, 5, 6)) and int(scores.argmax(0).max()) == 0
