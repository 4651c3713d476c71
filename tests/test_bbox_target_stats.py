"""Fast R-CNN's per-class box-target statistics (fast-rcnn roidb.py add_bbox_regression_targets)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visiontasks.detection.bbox_stats import class_target_stats, image_targets
from visiontasks.detection.box_coder import BoxCoder
from visiontasks.detection.predictor import FastRCNNPredictor


def _roidb():
    # image 1, class 1: gt [0, 0, 10, 10]; proposals: IoU 100/200 = 0.5 (an example: ≥ 0.5),
    # IoU 80/120 = 0.67 (an example), IoU 0 (not one). Targets (w = x1 − x0, centres):
    #   gt itself (0, 0, 0, 0); [0, 0, 10, 20]: (0, (5 − 10)/20, 0, log(10/20)) = (0, −0.25, 0, −ln 2);
    #   [2, 0, 12, 10]: ((5 − 7)/10, 0, 0, 0) = (−0.2, 0, 0, 0).
    # image 2, class 2: gt [0, 0, 20, 10] and a proposal on it: two examples with targets 0.
    return [
        (torch.tensor([[0.0, 0.0, 10.0, 20.0], [2.0, 0.0, 12.0, 10.0], [50.0, 50.0, 60.0, 60.0]]),
         torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1])),
        (torch.tensor([[0.0, 0.0, 20.0, 10.0]]), torch.tensor([[0.0, 0.0, 20.0, 10.0]]), torch.tensor([2])),
    ]


def test_examples_of_an_image_by_hand():
    labels, targets = image_targets(*_roidb()[0])
    assert labels.tolist() == [1, 1, 1]
    expected = [[0, 0, 0, 0], [0, -0.25, 0, -math.log(2)], [-0.2, 0, 0, 0]]
    np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)


def test_class_statistics_by_hand():
    means, stds, counts = class_target_stats(_roidb(), 3, include_flipped=False)
    assert counts.tolist() == [0, 3, 2]
    np.testing.assert_allclose(means[1], [-0.2 / 3, -0.25 / 3, 0, -math.log(2) / 3], atol=1e-6)
    # population std: E[t²] − E[t]²; dx: 0.04/3 − 0.04/9 = 0.08/9
    np.testing.assert_allclose(stds[1, 0], math.sqrt(0.08) / 3, atol=1e-6)
    np.testing.assert_allclose(stds[1, 1], math.sqrt(0.0625 / 3 - 0.0625 / 9), atol=1e-6)
    np.testing.assert_allclose(stds[1, 3], math.sqrt(math.log(2) ** 2 * (1 / 3 - 1 / 9)), atol=1e-6)
    # dw is 0 for every class-1 example and class 2 has only zero targets: σ = 0 is guarded to 1
    assert stds[1, 2] == 1.0 and stds[2].tolist() == [1.0] * 4 and means[2].tolist() == [0.0] * 4
    assert means[0].tolist() == [0.0] * 4 and stds[0].tolist() == [1.0] * 4


def test_mirrored_images_cancel_the_dx_mean():
    means, stds, counts = class_target_stats(_roidb(), 3, include_flipped=True)
    assert counts.tolist() == [0, 6, 4]
    assert means[1, 0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(stds[1, 0], math.sqrt(0.04 / 3), atol=1e-6)  # E[dx²] unchanged, mean 0
    np.testing.assert_allclose(means[1, 1], -0.25 / 3, atol=1e-6)           # dy, dw, dh as without mirrors


def test_predictor_normalises_targets_and_unnormalises_deltas():
    pred = FastRCNNPredictor(2, 3)
    pred.use_target_stats()
    means = torch.tensor([[0.0] * 4, [0.1, -0.2, 0.3, 0.0], [0.0] * 4])
    stds = torch.tensor([[1.0] * 4, [0.5, 0.5, 0.25, 2.0], [1.0] * 4])
    pred.set_target_stats(means, stds)
    assert set(pred.state_dict()) >= {"bbox_means", "bbox_stds"}
    raw = torch.tensor([[0.6, 0.3, 0.55, 1.0]])
    deltas = torch.zeros(2, 3, 4)
    deltas[0, 1] = torch.tensor([1.0, 1.0, 1.0, 0.5])  # (raw − μ) / σ
    losses = pred.losses(torch.zeros(2, 3), deltas, torch.tensor([1, 0]), raw)
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-7)
    # inference: zero deltas of class 1 mean the raw target μ_1
    proposals = torch.tensor([[10.0, 10.0, 50.0, 30.0]])
    logits = torch.tensor([[0.0, 10.0, 0.0]])
    out = pred.inference(logits, torch.zeros(1, 3, 4), [proposals], [(100, 100)])[0]
    expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(means[1].view(1, 1, 4), proposals)[0, 0]
    torch.testing.assert_close(out["boxes"][0], expected)
    with pytest.raises(ValueError, match="positive stds"):
        pred.set_target_stats(means, torch.zeros(3, 4))


def test_fixed_normalisation_stays_the_default():
    pred = FastRCNNPredictor(2, 3)
    assert not pred.target_stats and pred.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert "bbox_means" not in pred.state_dict()


def test_fast_rcnn_dataset_normalisation_adds_the_stats_stage_and_resumes_from_its_file(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from visiontasks.detection import fast_rcnn
    from visiontasks.detection.bbox_stats import BoxTargetStatsStage

    assert [s.name for s in fast_rcnn(num_classes=3, backbone="small").training_stages()] == ["sgd"]
    model = fast_rcnn(num_classes=3, backbone="small", bbox_normalize="dataset")
    assert [s.name for s in model.training_stages()] == ["bbox_stats", "sgd"]
    stage = model.training_stages()[0]
    monkeypatch.setattr(BoxTargetStatsStage, "_examples", staticmethod(lambda ctx: iter(_roidb())))
    ctx = SimpleNamespace(model=model, out_dir=tmp_path, resume=False, cfg={})
    assert stage.run(ctx) == {"computed": True, "examples": 10}
    means, stds, _ = class_target_stats(_roidb(), 3)
    predictor = model.roi_head.predictor
    np.testing.assert_allclose(predictor.bbox_means.numpy(), means, atol=1e-6)
    np.testing.assert_allclose(predictor.bbox_stds.numpy(), stds, atol=1e-6)
    # on resume the file is read, not the data
    fresh = fast_rcnn(num_classes=3, backbone="small", bbox_normalize="dataset")
    monkeypatch.setattr(BoxTargetStatsStage, "_examples", staticmethod(lambda ctx: pytest.fail("data read")))
    summary = stage.run(SimpleNamespace(model=fresh, out_dir=tmp_path, resume=True, cfg={}))
    assert summary["computed"] is False
    torch.testing.assert_close(fresh.roi_head.predictor.bbox_stds, predictor.bbox_stds)
    with pytest.raises(ValueError, match="bbox_normalize"):
        fast_rcnn(num_classes=3, backbone="small", bbox_normalize="per-class")
