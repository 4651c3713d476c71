"""The detection seams through their public paths: heads sized from poolers, the predictor split,
the detector base (difficult objects, loss weights, optimiser convention), the warp transform,
proposals through the data path, training stages and up-front config validation."""
from __future__ import annotations

import json

import pytest
import torch

from visiontasks import get_model
from visiontasks.backbones import SmallBackbone
from visiontasks.config import load_config
from visiontasks.data import VOCDetection
from visiontasks.data.transforms import build_detection_transforms
from visiontasks.detection import WarpTransform, build_roi_head
from visiontasks.detection.base import CAFFE_OPTIM, PLAIN_OPTIM
from visiontasks.engine import Trainer
from visiontasks.engine.evaluate import detect
from visiontasks.engine.stages import SGDStage, StageContext, run_stages
from visiontasks.errors import InputError

FAST = dict(num_classes=3, backbone="small", backbone_kwargs={"width": 16, "head_dim": 32}, min_size=128,
            max_size=160)


def _fast(**kwargs):
    torch.manual_seed(0)
    return get_model("fast_rcnn", **{**FAST, **kwargs})


def test_box_head_is_sized_from_the_pooler_and_never_shared():
    body = SmallBackbone(width=16, head_dim=32)
    spp = build_roi_head(body, 3, pooler="spp")
    assert spp.box_head[1].in_features == 64 * 50  # C · (36 + 9 + 4 + 1)
    grid = build_roi_head(body, 3, pooler="roi_pool")
    assert grid.box_head[1].in_features == 64 * 49
    a, _ = body.box_head()
    b, _ = body.box_head()
    assert all(p is not q for p, q in zip(a.parameters(), b.parameters()))


def test_pretrained_fc6_kept_at_the_native_width_and_replaced_for_a_pyramid():
    alex = get_model("alexnet")
    native, _ = alex.box_head()
    pyramid, _ = alex.box_head(256 * 50)
    fc6_native = native[1][1]
    assert fc6_native.in_features == 256 * 36
    assert torch.equal(fc6_native.weight, alex.__dict__["_fc67"][1].weight)
    assert pyramid[1][1].in_features == 256 * 50
    assert torch.equal(pyramid[1][4].weight, alex.__dict__["_fc67"][4].weight)  # fc7 kept
    with pytest.raises(ValueError, match="conv5_x"):
        get_model("resnet18").box_head(256 * 50)


def test_spp_pooler_trains_in_fast_rcnn():
    model = _fast(pooler="spp").train()
    image = torch.rand(3, 120, 150)
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1]),
              "proposals": torch.tensor([[8.0, 18.0, 62.0, 83.0], [70.0, 5.0, 140.0, 100.0]])}
    losses = model([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    sum(losses.values()).backward()


def test_difficult_objects_never_reach_the_heads():
    model = _fast().train()
    seen = {}
    model.roi_head.register_forward_pre_hook(lambda mod, args: seen.update(targets=args[3]))
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [70.0, 10.0, 120.0, 90.0]]),
              "labels": torch.tensor([1, 2]), "difficult": torch.tensor([False, True]),
              "proposals": torch.tensor([[8.0, 18.0, 62.0, 83.0]])}
    model([torch.rand(3, 120, 150)], [target])
    assert seen["targets"][0]["labels"].tolist() == [1]
    assert seen["targets"][0]["boxes"].shape == (1, 4)


def test_loss_weights_scale_their_term_and_unknown_names_fail():
    image = torch.rand(3, 120, 150)
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1]),
              "proposals": torch.tensor([[8.0, 18.0, 62.0, 83.0], [70.0, 5.0, 140.0, 100.0]])}
    torch.manual_seed(3)
    plain = _fast().train()([image], [target])
    torch.manual_seed(3)
    weighted = _fast(loss_weights={"loss_box_reg": 2.5}).train()([image], [target])
    assert weighted["loss_box_reg"].item() == pytest.approx(2.5 * plain["loss_box_reg"].item(), rel=1e-5)
    assert weighted["loss_classifier"].item() == pytest.approx(plain["loss_classifier"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="loss_objectness"):
        _fast(loss_weights={"loss_objectness": 1.0}).train()([image], [target])


def test_optimizer_bias_convention_comes_from_the_model(tmp_path):
    model = _fast()
    assert model.optim_defaults == CAFFE_OPTIM
    trainer = Trainer(model, [], lambda b: b, tmp_path, max_iters=1, lr=0.01, weight_decay=0.001)
    weights, biases = trainer.optimizer.param_groups
    assert biases["lr"] == pytest.approx(0.02) and biases["weight_decay"] == 0.0
    model.optim_defaults = PLAIN_OPTIM
    trainer = Trainer(model, [], lambda b: b, tmp_path, max_iters=1, lr=0.01, weight_decay=0.001)
    _, biases = trainer.optimizer.param_groups
    assert biases["lr"] == pytest.approx(0.01) and biases["weight_decay"] == pytest.approx(0.001)
    trainer = Trainer(model, [], lambda b: b, tmp_path, max_iters=1, lr=0.01, bias_lr_factor=3.0)
    assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(0.03)


def test_warp_transform_scales_boxes_per_axis_and_back():
    t = WarpTransform(448)
    image = torch.rand(3, 100, 200)
    batch, targets = t([image], [{"boxes": torch.tensor([[20.0, 10.0, 120.0, 60.0]])}])
    assert batch.tensors.shape == (1, 3, 448, 448) and batch.image_sizes == [(448, 448)]
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[44.8, 44.8, 268.8, 268.8]]))
    back = t.postprocess([{"boxes": targets[0]["boxes"]}], [(448, 448)], [(100, 200)])
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[20.0, 10.0, 120.0, 60.0]]))
    assert torch.allclose(WarpTransform(64)([torch.full((3, 10, 30), 0.5)])[0].tensors, torch.tensor(0.5))


def test_proposals_travel_with_the_sample_through_flip_and_sanitize(embedded_root):
    ds0 = VOCDetection(embedded_root, "test", classes=("circle", "square", "triangle"))
    _, t0 = ds0[0]
    w = 160.0
    props = torch.tensor([[0.0, 0.0, 20.0, 30.0], [50.0, 40.0, 50.0, 90.0]])  # the 2nd is 0 px wide
    flip = build_detection_transforms(train=True, hflip_prob=1.0)
    ds = VOCDetection(embedded_root, "test", classes=ds0.classes, transforms=flip, proposals=lambda i: props.clone())
    image, target = ds[0]
    assert image.shape[-1] == w
    # VOC inclusive pixels: x → W - 1 - x, corners swap; sanitising the GT leaves both proposals
    torch.testing.assert_close(target["proposals"], torch.tensor([[139.0, 0.0, 159.0, 30.0],
                                                                  [109.0, 40.0, 109.0, 90.0]]))
    assert len(target["boxes"]) == len(t0["boxes"])
    torch.testing.assert_close(target["boxes"][:, 0], w - 1 - t0["boxes"][:, 2])


def test_evaluation_and_predict_pass_the_proposals():
    model = _fast(test={"score_thresh": 0.0}).eval()
    image = torch.rand(3, 120, 150)
    props = torch.tensor([[8.0, 18.0, 62.0, 83.0], [70.0, 5.0, 140.0, 100.0]])
    with torch.no_grad():
        via_targets = detect(model, [image], [{"proposals": props}])
        direct = model([image], proposals=[props])
    torch.testing.assert_close(via_targets[0]["boxes"], direct[0]["boxes"])
    assert len(direct[0]["boxes"]) > 0
    with pytest.raises(ValueError, match="needs proposals"):
        model([image])

    from visiontasks.api import Predictor

    predictor = Predictor(model, "detection", ["a", "b"], preset="evaluate")
    assert model.score_thresh == 0.05  # the preset sets the model's own threshold: one filter
    result = predictor.predict(image, proposals=props)
    assert (result.scores >= 0.05).all()
    predictor.use_preset("visualize")
    assert model.score_thresh == 0.7


class _CountingStage:
    def __init__(self, name):
        self.name, self.calls = name, 0

    def run(self, ctx):
        self.calls += 1
        ctx.metrics = {"calls": self.calls}
        return {"calls": self.calls}


def test_stages_run_in_order_and_finished_ones_are_skipped_on_resume(tmp_path):
    a, b = _CountingStage("features"), _CountingStage("svm")

    def ctx(resume):
        return StageContext(cfg={}, out_dir=tmp_path, model=None, train_dataset=None, test_dataset=None,
                            device="cpu", resume=resume, make_trainer=None, eval_fn=None)

    lines = []
    run_stages([a, b], ctx(False), log=lines.append)
    assert (a.calls, b.calls) == (1, 1)
    state = json.loads((tmp_path / "stages.json").read_text())
    assert state["features"]["status"] == "done" and state["svm"]["summary"] == {"calls": 1}
    # an interrupted second stage: only it runs again on resume
    state["svm"]["status"] = "running"
    (tmp_path / "stages.json").write_text(json.dumps(state))
    run_stages([a, b], ctx(True), log=lines.append)
    assert (a.calls, b.calls) == (1, 2)
    assert any("features" in line and "skipped" in line for line in lines)
    # a fresh (non-resume) run starts over
    run_stages([a, b], ctx(False), log=lines.append)
    assert (a.calls, b.calls) == (2, 3)
    assert SGDStage().name == "sgd"


@pytest.mark.parametrize("override, match", [
    ("model.name=faster_rcnn", "detection model but the config's task is 'segmentation'"),
    ("eval.metric=banana", "eval.metric must be one of"),
])
def test_config_validation_rejects_before_training(override, match):
    from tests.conftest import REPO

    with pytest.raises(InputError, match=match):
        load_config(REPO / "configs" / "segmentation" / "default.yaml", [override])
    with pytest.raises(InputError, match="eval.metric"):
        load_config(REPO / "configs" / "detection" / "default.yaml", ["eval.metric=miou"])
