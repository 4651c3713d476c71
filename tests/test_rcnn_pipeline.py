"""R-CNN end to end on three tiny synthetic images through tools/train_det.py: fine-tune, cache,
fit, install, evaluate; the artifacts, resuming per image / per class, the API and eval.py on the
run, and one-line errors for missing or empty proposal files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
import train_det  # noqa: E402
from _common import run_cli  # noqa: E402

import visiontasks  # noqa: E402
from visiontasks.data.proposals import write_manifest, write_proposals  # noqa: E402
from visiontasks.detection.proposals import proposal_params  # noqa: E402
from visiontasks.detection.rcnn import RCNN, SVMBoxPredictor  # noqa: E402

CLASSES = ("red", "blue")
PROPOSER = {"method": "selective_search", "mode": "fast", "resize_width": None, "min_size": 4}
TRAIN, TEST = ("a0", "a1", "a2"), ("b0", "b1")


def _scene(rng: np.random.Generator, h: int = 64, w: int = 80) -> tuple[np.ndarray, list]:
    image = rng.integers(90, 140, size=(h, w, 3)).astype(np.uint8)
    objects = []
    for label, colour, (x0, y0) in ((1, (220, 30, 30), (6, 8)), (2, (30, 30, 220), (44, 26))):
        x0, y0 = x0 + int(rng.integers(0, 6)), y0 + int(rng.integers(0, 6))
        x1, y1 = x0 + 20, y0 + 22
        image[y0:y1 + 1, x0:x1 + 1] = colour
        objects.append((label, x0, y0, x1, y1))
    return image, objects


def _write_voc(root: Path) -> dict[str, list]:
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    gts = {}
    for image_id in TRAIN + TEST:
        image, objects = _scene(rng)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        xml = "".join(f"<object><name>{CLASSES[lab - 1]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                      f"<ymin>{y0 + 1}</ymin><xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>"
                      for lab, x0, y0, x1, y1 in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>80</width><height>64</height><depth>3</depth></size>{xml}</annotation>")
        gts[image_id] = objects
    (root / "ImageSets/Main/train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(TEST) + "\n")
    return gts


def _write_proposals(folder: Path, gts: dict[str, list]) -> None:
    rng = np.random.default_rng(1)
    write_manifest(folder, proposal_params(**PROPOSER))
    for image_id, objects in gts.items():
        boxes = []
        for _, x0, y0, x1, y1 in objects:  # near-perfect, shifted and loose boxes around each object
            for dx, dy, grow in ((0, 0, 0), (1, -1, 1), (3, 2, 0), (-2, 0, 3), (6, 5, 0), (0, 0, 8)):
                boxes.append([x0 + dx - grow, y0 + dy - grow, x1 + dx + grow, y1 + dy + grow])
        for _ in range(14):  # background
            x, y = rng.integers(0, 60), rng.integers(0, 44)
            boxes.append([x, y, x + rng.integers(8, 20), y + rng.integers(8, 20)])
        write_proposals(folder, image_id, np.clip(np.array(boxes, dtype=np.float32), 0, [79, 63, 79, 63]))


def _overrides(root: Path, proposals: Path) -> list[str]:
    return ["data.dataset=voc", f"data.root={root}", f"data.classes={list(CLASSES)}", "data.train_split=train",
            "data.test_split=test", f"data.proposals={proposals}", "data.num_workers=0", "model.num_classes=3",
            "model.backbone_kwargs={width: 8, head_dim: 32}", "model.crop_size=32", "model.context_pad=4",
            "model.chunk_size=16", "model.roi.batch_size_per_image=16", "model.fit_params.svm_retrain_limit=10",
            "train.max_iters=6", "train.batch_size=3", "train.lr=0.01", "train.warmup_iters=0",
            "train.checkpoint_every=3", "train.log_every=3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("rcnn_data")
    gts = _write_voc(base / "voc")
    _write_proposals(base / "proposals", gts)
    return base / "voc", base / "proposals", gts


def _train(out: Path, data, *extra: str) -> int:
    root, proposals, _ = data
    return run_cli(train_det.main, ["--config", str(REPO / "configs/detection/rcnn_small.yaml"), "--out", str(out),
                                    "--device", "cpu", *extra, *_overrides(root, proposals)])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("rcnn_run")
    torch.manual_seed(0)
    assert _train(out, data) == 0
    return out


def test_a_run_leaves_every_stage_artifact(run, data):
    stages = json.loads((run / "stages.json").read_text())
    assert list(stages) == ["finetune", "features", "svm", "bbox_reg"]
    assert all(s["status"] == "done" for s in stages.values())
    features = sorted(p.stem for p in (run / "features").glob("*.npz"))
    assert features == list(TRAIN)
    manifest = json.loads((run / "features/manifest.json").read_text())
    assert manifest["image_ids"] == list(TRAIN) and manifest["classes"] == list(CLASSES)
    with np.load(run / "features/a0.npz", allow_pickle=False) as npz:
        n = len(npz["boxes"])
        assert npz["fc7"].shape == (n, 32) and npz["pool5"].shape == (n, 32 * 49)
        assert npz["fc7"].dtype == np.float16 and npz["labels"][:2].tolist() == [1, 2]
        assert n == 2 + 26  # the two ground-truth boxes first, then every proposal
    assert stages["features"]["summary"]["bytes_per_image"] > n * (32 + 32 * 49) * 2
    for stage in ("svm", "bbox_reg"):
        assert sorted(p.name for p in (run / stage).glob("*.npz")) == ["01-red.npz", "02-blue.npz"]
    svm = stages["svm"]["summary"]
    assert svm["red"]["num_pos"] == 3 and svm["red"]["retrains"] >= 2  # one GT per image; mining retrained
    with np.load(run / "svm/01-red.npz", allow_pickle=False) as npz:
        assert float(npz["scale"]) == pytest.approx(20.0 / svm["fc7_mean_norm"])
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert "roi_head.predictor.svm_weight" in state["model"] and "optimizer" in state and state["iteration"] == 6
    assert not state["model"]["roi_head.predictor.bbox_weight"][1:].eq(0).all()  # regressors installed
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(CLASSES) and 0.0 <= metrics["mAP"] <= 1.0


def test_the_run_predicts_and_evaluates_with_the_svms(run, data, tmp_path, capsys):
    root, proposals, _ = data
    predictor = visiontasks.load_model(run, preset="evaluate")
    assert isinstance(predictor.model, RCNN) and isinstance(predictor.model.roi_head.predictor, SVMBoxPredictor)
    image = root / "JPEGImages" / "b0.jpg"
    stored = torch.from_numpy(np.load(proposals / "b0.npy"))
    result = predictor.predict(image, proposals=stored)
    assert len(result.boxes) > 0 and (result.scores > 0.05).all()
    computed = predictor.predict(image)  # proposals from selective search, as the model names them
    assert computed.boxes.shape[-1] == 4
    rc = run_cli(eval_tool.main, ["det", "--checkpoint", str(run / "checkpoint_last.pt"), "--root", str(root),
                                  "--split", "test", "--proposals", str(proposals), "--out", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["mAP"])


def test_resume_skips_done_stages_and_redoes_only_missing_images_and_classes(run, data, monkeypatch, capsys):
    calls = []
    original = RCNN.extract

    def counting(self, image, gt, proposals):
        calls.append(1)
        return original(self, image, gt, proposals)

    monkeypatch.setattr(RCNN, "extract", counting)
    before = {p.name: p.stat().st_mtime_ns for p in (run / "features").glob("*.npz")}
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert _train(run, data, "--resume") == 0
    out = capsys.readouterr().out
    assert "stage 2/4 (features): done in an earlier run, skipped" in out and not calls
    assert {p.name: p.stat().st_mtime_ns for p in (run / "features").glob("*.npz")} == before
    assert json.loads((run / "metrics.json").read_text())["mAP"] == pytest.approx(metrics["mAP"])
    # a kill during the features stage: one image missing; and the SVM of one class missing
    state = json.loads((run / "stages.json").read_text())
    state["features"]["status"] = state["svm"]["status"] = "running"
    (run / "stages.json").write_text(json.dumps(state))
    (run / "features/a1.npz").unlink()
    (run / "svm/02-blue.npz").unlink()
    red = (run / "svm/01-red.npz").read_bytes()
    assert _train(run, data, "--resume") == 0
    assert len(calls) == 1 and (run / "features/a1.npz").is_file()
    summary = json.loads((run / "stages.json").read_text())["svm"]["summary"]
    assert summary["fitted"] == ["blue"] and (run / "svm/01-red.npz").read_bytes() == red


@pytest.mark.parametrize("problem, message", [
    ("missing", "a2.npy: proposals file for image 'a2' not found"),
    ("empty", "a2.npy: no proposals for this image"),
])
def test_bad_proposal_files_are_one_line_errors(problem, message, data, tmp_path, capsys):
    root, proposals, gts = data
    bad = tmp_path / "proposals"
    _write_proposals(bad, gts)
    if problem == "missing":
        (bad / "a2.npy").unlink()
    else:
        write_proposals(bad, "a2", np.zeros((0, 4), np.float32))
    rc = run_cli(train_det.main, ["--config", str(REPO / "configs/detection/rcnn_small.yaml"), "--out",
                                  str(tmp_path / "run"), "--device", "cpu", *_overrides(root, bad)])
    err = capsys.readouterr().err.strip().splitlines()  # (a progress bar may precede it)
    assert rc == 2
    assert err[-1].startswith("error: ") and message in err[-1] and sum("error" in line for line in err) == 1
