"""The lineage's paper configs (R-CNN, SPP-net, Fast R-CNN, YOLOv1, Fast YOLO) on real photographs (slow job).

Like ``test_real_subset.py`` for Faster R-CNN and the segmenters: a few coco128-voc photographs
in a temporary VOC tree, the real tool with the shipped config, changing only what a CPU needs (no
ImageNet download, 2 iterations, small batches, at most 300 proposals per image). Selective search
runs once for the module (``data.proposals=auto``, cached under a temporary $VISIONTASKS_HOME):
R-CNN, SPP-net and Fast R-CNN ask for the same proposals. Each run is then evaluated on the test
photographs with ``tools/eval.py det --checkpoint`` and predicts on a photograph and on an empty
(black) image through ``load_model(...).predict()``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from test_real_subset import _subset  # noqa: F401  (the same temporary tree builder)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
import train_det  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks import load_model  # noqa: E402
from visiontasks.data import VOCDetection, read_image  # noqa: E402

pytestmark = pytest.mark.slow

#: config → overrides a CPU needs beyond the common ones.
CONFIGS = {
    "fast_rcnn_vgg16_voc07.yaml": ["model.max_proposals=300"],
    "spp_net_alexnet_voc07.yaml": ["model.max_proposals=300", "model.roi.batch_size_per_image=64"],
    "rcnn_alexnet_voc07.yaml": ["model.max_proposals=300", "model.chunk_size=64"],
    "yolov1_voc07.yaml": ["train.batch_size=2", "model.fc_dim=512"],
    "fast_yolo_voc07.yaml": ["train.batch_size=2", "model.fc_dim=512"],
}


@pytest.fixture(scope="module")
def lineage_tree(coco128_root, tmp_path_factory) -> Path:
    train = list(VOCDetection(coco128_root, "trainval").ids[:3])
    test = list(VOCDetection(coco128_root, "test").ids[:4])
    return _subset(coco128_root, tmp_path_factory.mktemp("lineage"), {("Main", "trainval"): train,
                                                                      ("Main", "test"): test})


@pytest.fixture(scope="module")
def second_tree(coco128_root, tmp_path_factory) -> Path:
    """Other trainval photographs in a second folder: the "VOC2012" of the YOLO configs' 07+12."""
    train = list(VOCDetection(coco128_root, "trainval").ids[3:5])
    return _subset(coco128_root, tmp_path_factory.mktemp("second"), {("Main", "trainval"): train})


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIONTASKS_HOME", str(home))
        yield home


@pytest.mark.parametrize("config", list(CONFIGS))
def test_lineage_config_trains_evaluates_and_predicts_on_real_photos(lineage_tree, second_tree, shared_home,
                                                                    tmp_path, config, capsys):
    proposal_fed = not config.startswith(("yolov1", "fast_yolo"))
    # the YOLO configs train on 07+12: data.extra_train_roots points at the second folder
    extra = ["data.proposals=auto"] if proposal_fed else [f"data.extra_train_roots=[{second_tree}]"]
    run = tmp_path / "run"
    rc = run_cli(train_det.main, [
        "--config", str(REPO / "configs" / "detection" / config), "--out", str(run), "--device", "cpu",
        f"data.root={lineage_tree}", "model.pretrained_backbone=false", "train.max_iters=2",
        "train.log_every=1", "data.num_workers=0", *CONFIGS[config], *extra])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "voc07" and len(metrics["per_class"]) == 20
    assert metrics["mAP"] is None or 0.0 <= metrics["mAP"] <= 1.0

    # the checkpoint scores again through the evaluation tool, on the same photographs
    out_json = tmp_path / "eval.json"
    argv = ["det", "--checkpoint", str(run / "checkpoint_last.pt"), "--root", str(lineage_tree),
            "--split", "test", "--out", str(out_json)]
    if proposal_fed:
        argv += ["--proposals", str(next((shared_home / "proposals").rglob("manifest.json")).parent)]
    rc = run_cli(eval_tool.main, argv)
    assert rc == 0, capsys.readouterr().err
    again = json.loads(out_json.read_text())
    assert again["mAP"] == pytest.approx(metrics["mAP"], abs=1e-9) if metrics["mAP"] is not None \
        else again["mAP"] is None

    # predict(): a photograph (proposals computed on the fly where the model needs them) and a blank image
    model = load_model(run)
    photo = read_image(lineage_tree / "JPEGImages" / f"{VOCDetection(lineage_tree, 'test').ids[0]}.jpg")
    for image in (photo, torch.zeros(3, 240, 320, dtype=torch.uint8)):
        out = model.predict(image)
        assert out.boxes.shape[-1] == 4 and len(out.boxes) == len(out.scores) == len(out.labels)
        assert torch.isfinite(out.boxes).all()
