"""EDeconvNet: two segmenters' class-conditional maps combined (stubs with known maps)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from visiontasks.segmentation.deconvnet.ensemble import EnsembleSegmenter


class Stub(nn.Module):
    """A segmenter whose scores are a fixed (K, H, W) map, whatever the image."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.scores.expand(images.shape[0], *self.scores.shape)}


# One image of 1x2 pixels, K = 3. Pixel 0: A is sure of class 1 (softmax (0, 1, 0) up to e^-20), B
# splits between classes 0 and 2. Pixel 1: A prefers class 1, B class 0.
A = torch.tensor([[[0.0, 0.0]], [[20.0, math.log(3.0)]], [[0.0, 0.0]]])           # (3, 1, 2)
B = torch.tensor([[[0.0, math.log(6.0)]], [[-30.0, 0.0]], [[0.0, math.log(3.0)]]])


def test_mean_of_the_softmax_maps():
    model = EnsembleSegmenter(Stub(A), Stub(B), combine="mean")
    probs = model(torch.zeros(2, 3, 1, 2))["out"].softmax(1)
    # pixel 1: A's softmax of (0, ln3, 0) = (1/5, 3/5, 1/5); B's of (ln6, 0, ln3) = (6/10, 1/10, 3/10)
    expected1 = torch.tensor([0.4, 0.35, 0.25])
    # pixel 0: A ~ (0, 1, 0), B ~ (1/2, 0, 1/2) -> (1/4, 1/2, 1/4)
    expected0 = torch.tensor([0.25, 0.5, 0.25])
    assert torch.allclose(probs[0, :, 0, 1], expected1, atol=1e-6)
    assert torch.allclose(probs[0, :, 0, 0], expected0, atol=1e-6)
    assert torch.equal(probs[0], probs[1])
    # labels: pixel 0 -> class 1; pixel 1 -> class 0 (0.4), although A alone says class 1
    assert model(torch.zeros(1, 3, 1, 2))["out"].argmax(1)[0, 0].tolist() == [1, 0]
    assert A.argmax(0)[0].tolist() == [1, 1]


def test_product_of_the_floored_raw_scores_as_the_released_code():
    model = EnsembleSegmenter(Stub(A), Stub(B), combine="product")
    out = model(torch.zeros(1, 3, 1, 2))["out"][0, :, 0]
    # max(0, A) * max(0, B): pixel 0 -> (0, 20*0, 0) = 0s; pixel 1 -> (0, ln3*0, 0) = 0s  (B's class 1 is 0)
    assert torch.equal(out, torch.zeros(3, 2))
    b2 = B.clone()
    b2[1, 0, 1] = 2.0
    out = EnsembleSegmenter(Stub(A), Stub(b2), combine="product")(torch.zeros(1, 3, 1, 2))["out"][0, :, 0, 1]
    assert torch.allclose(out, torch.tensor([0.0, 2 * math.log(3.0), 0.0]))


def test_refuses_an_unknown_combine_and_mismatched_classes():
    with pytest.raises(ValueError, match="model.combine"):
        EnsembleSegmenter(Stub(A), Stub(B), combine="max")
    with pytest.raises(ValueError, match="disagree"):
        EnsembleSegmenter(Stub(A), Stub(B[:2]))(torch.zeros(1, 3, 1, 2))


@pytest.mark.slow  # builds the 252M-parameter DeconvNet and FCN-8s
def test_edeconvnet_builds_deconvnet_instance_wise_and_fcn8s():
    from visiontasks.registry import get_model, model_task
    from visiontasks.segmentation import FCN, DeconvNet

    model = get_model("edeconvnet", num_classes=3, combine="product")
    assert model_task("edeconvnet") == "segmentation"
    assert isinstance(model.first, DeconvNet) and model.first.inference == "instance"
    assert isinstance(model.second, FCN) and model.combine == "product"
