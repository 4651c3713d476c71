"""Every registered model builds, runs in eval mode and takes a training step (incl. an empty image).

Detectors run through the public paths: training takes the targets as the data path makes them
(with ``proposals`` for detectors fed precomputed proposals), evaluation goes through the
evaluators' ``detect`` forward.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visiontasks.engine.evaluate import detect
from visiontasks.registry import get_model, list_models, model_task

#: Builder arguments of the smoke test (small and fast); per-model exceptions below.
SMOKE = dict(num_classes=3, backbone="small", min_size=96, max_size=128)
SMOKE_KWARGS: dict[str, dict] = {
    "rcnn": dict(num_classes=3, backbone="small", crop_size=32, context_pad=4),  # warps regions: no resize
    "yolov1": dict(num_classes=3, backbone="small", input_size=128, fc_dim=64),  # warps images to one size
    "fast_yolo": dict(num_classes=3, input_size=128, fc_dim=64),  # its own 9-conv darknet
}


def test_registry_lists_the_lineage():
    assert {"faster_rcnn", "fast_rcnn"} <= set(list_models("detection"))
    assert {"fcn32s", "fcn16s", "fcn8s", "deconvnet", "dilated_frontend", "dilated_context", "fcn_small"} <= set(
        list_models("segmentation"))
    assert {"vgg16", "resnet50", "resnet18", "alexnet", "small"} <= set(list_models("backbone"))
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope")


@pytest.mark.parametrize("name", list_models("detection"))
def test_detector_smoke_with_an_empty_image(name):
    torch.manual_seed(0)
    model = get_model(name, **SMOKE_KWARGS.get(name, SMOKE))
    images = [torch.rand(3, 90, 120), torch.rand(3, 100, 80)]
    targets = [{"boxes": torch.tensor([[10.0, 20, 60, 70]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    if model.needs_proposals:
        targets[0]["proposals"] = torch.tensor([[12.0, 18, 58, 75], [0, 0, 40, 40], [50, 30, 110, 85]])
        targets[1]["proposals"] = torch.tensor([[5.0, 5, 60, 70]])
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad():
        out = detect(model, images, targets)
    assert len(out) == 2 and set(out[0]) >= {"boxes", "labels", "scores"}
    for o, img in zip(out, images):
        assert o["labels"].dtype == torch.int64 and o["boxes"].shape[-1] == 4
        if len(o["boxes"]):
            assert (o["boxes"][:, 2] <= img.shape[-1]).all() and (o["boxes"][:, 3] <= img.shape[-2]).all()


@pytest.mark.parametrize("name", list_models("segmentation"))
def test_segmenter_smoke(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=3)
    x = torch.rand(2, 3, 45, 61)
    out = model(x)["out"]
    assert out.shape == (2, 3, 45, 61)
    target = torch.randint(0, 3, (2, 45, 61))
    target[:, :5] = 255
    F.cross_entropy(out, target, ignore_index=255).backward()


@pytest.mark.parametrize("name", list_models("backbone"))
def test_backbone_smoke(name):
    assert model_task(name) == "backbone"
    bb = get_model(name)
    assert bb(torch.rand(1, 3, 64, 64)).shape[1] == bb.out_channels
