"""Faster R-CNN's 4-step alternating training (visiontasks/detection/faster_rcnn/alternating.py).

What each step starts from, trains and hands on is checked on the checkpoints of a tiny run
against py-faster-rcnn's alt-opt prototxts (see the module docstring); a run killed mid-step
(a real subprocess, SIGKILL) and resumed ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from visiontasks.config import load_config
from visiontasks.detection.faster_rcnn.alternating import ALTERNATING_STEPS, parse_alternating
from visiontasks.engine.checkpoint import load_checkpoint
from visiontasks.engine.run import build_model, run_training
from visiontasks.errors import InputError
from visiontasks.registry import get_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import train_det  # noqa: E402
from _common import run_cli  # noqa: E402

CONFIG = REPO / "configs" / "detection" / "faster_rcnn_small_alternating.yaml"
STEPS = {"rpn1": 2, "fast_rcnn1": 2, "rpn2": 1, "fast_rcnn2": 1}


def _overrides(root: Path, steps: dict[str, int]) -> list[str]:
    return [f"data.root={root}", "data.dataset=voc", "data.classes=[circle,square,triangle]", "data.num_workers=0",
            "train.batch_size=2", "train.log_every=1", "train.checkpoint_every=1", "train.warmup_iters=0",
            "model.min_size=96", "model.max_size=96",
            *(f"model.stages.{k}.max_iters={v}" for k, v in steps.items())]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from visiontasks.data import build_embedded_dataset

    return build_embedded_dataset(tmp_path_factory.mktemp("tiny_alt"), seed=0, num_trainval=4, num_test=2,
                                  image_size=96)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_a_missing_step_is_one_line_naming_the_key():
    steps = {k: {"max_iters": 1} for k in ALTERNATING_STEPS if k != "rpn2"}
    with pytest.raises(InputError) as err:
        parse_alternating("alternating", steps)
    assert "model.stages.rpn2" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"model\.stages\.fast_rcnn2"):
        get_model("faster_rcnn", num_classes=4, backbone="small", training="alternating",
                  stages={k: {"max_iters": 1} for k in ALTERNATING_STEPS[:3]})
    with pytest.raises(InputError, match=r"model\.stages\.rpn1\.max_iters"):
        parse_alternating("alternating", {**{k: {"max_iters": 1} for k in ALTERNATING_STEPS}, "rpn1": {"lr": 0.1}})
    with pytest.raises(InputError, match=r"model\.training"):
        parse_alternating("alternated", None)
    assert parse_alternating("joint", None) is None


def test_a_config_missing_a_step_stops_the_tool_with_one_line(tiny, tmp_path, capsys):
    config = tmp_path / "missing.yaml"
    config.write_text(f"_base_: {CONFIG.parent / 'default.yaml'}\nmodel:\n  training: alternating\n  stages:\n"
                      "    rpn1: {max_iters: 1}\n    fast_rcnn1: {max_iters: 1}\n    rpn2: {max_iters: 1}\n")
    capsys.readouterr()
    rc = run_cli(train_det.main, ["--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu",
                                  *_overrides(tiny, {})])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "model.stages.fast_rcnn2" in lines[0]
    assert not (tmp_path / "run" / "stages.json").exists()


def test_joint_stays_the_default():
    model = get_model("faster_rcnn", num_classes=4, backbone="small")
    assert not hasattr(model, "training_stages")
    cfg = load_config(CONFIG)
    assert cfg["model"]["training"] == "alternating" and set(cfg["model"]["stages"]) == set(ALTERNATING_STEPS)


@pytest.mark.slow
def test_each_step_starts_trains_and_hands_on_as_py_faster_rcnn(tiny, tmp_path):
    cfg = load_config(CONFIG, _overrides(tiny, STEPS))
    out = tmp_path / "run"
    metrics = run_training(cfg, out, device="cpu")
    assert "mAP" in metrics
    state = json.loads((out / "stages.json").read_text())
    assert list(state) == ["rpn1", "proposals1", "fast_rcnn1", "rpn2", "proposals2", "fast_rcnn2"]
    assert all(v["status"] == "done" for v in state.values())
    w = {s: _weights(out / s / "checkpoint_last.pt") for s in STEPS}
    torch.manual_seed(cfg["train"]["seed"])
    init = build_model(cfg, 4).state_dict()  # the run's built ("ImageNet") model, same seed
    # rpn1 trains backbone + RPN only; fast_rcnn1 starts again from the built model (RPN layers too)
    assert not _same(w["rpn1"], init, "backbone.") and not _same(w["rpn1"], init, "proposer.")
    assert _same(w["rpn1"], init, "roi_head.")
    assert _same(w["fast_rcnn1"], init, "proposer.")
    assert not _same(w["fast_rcnn1"], init, "backbone.") and not _same(w["fast_rcnn1"], init, "roi_head.")
    # rpn2: backbone frozen at fast_rcnn1's, RPN trained from the built model's, RoI head carried
    assert _same(w["rpn2"], w["fast_rcnn1"], "backbone.") and _same(w["rpn2"], w["fast_rcnn1"], "roi_head.")
    assert not _same(w["rpn2"], init, "proposer.")
    # fast_rcnn2: backbone and RPN frozen; fc6/fc7 from fast_rcnn1, predictor afresh, both trained
    assert _same(w["fast_rcnn2"], w["rpn2"], "backbone.") and _same(w["fast_rcnn2"], w["rpn2"], "proposer.")
    assert not _same(w["fast_rcnn2"], w["rpn2"], "roi_head.box_head.")
    assert not _same(w["fast_rcnn2"], w["rpn2"], "roi_head.predictor.")
    final = _weights(out / "checkpoint_last.pt")
    assert all(torch.equal(final[k], v) for k, v in w["fast_rcnn2"].items())
    # the proposal folders hold one file per training image and the manifest of the RPN that made them
    for folder, source in (("proposals1", "rpn1"), ("proposals2", "rpn2")):
        manifest = json.loads((out / folder / "manifest.json").read_text())
        assert manifest["params"]["source"] == f"{source}/checkpoint_last.pt"
        assert len(list((out / folder).glob("*.npy"))) == 4


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights(tiny, tmp_path):
    steps = {"rpn1": 2, "fast_rcnn1": 40, "rpn2": 1, "fast_rcnn2": 2}
    overrides = _overrides(tiny, steps)
    # both runs are the tool in a fresh interpreter with one thread: the pytest process (threads capped by
    # conftest) and a subprocess (as many threads as cores) would sum floats in different orders
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    tool = [sys.executable, str(REPO / "tools" / "train_det.py"), "--config", str(CONFIG), "--device", "cpu"]
    whole = tmp_path / "whole"
    subprocess.run([*tool, "--out", str(whole), *overrides], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=900)

    out = tmp_path / "killed"
    cmd = [*tool, "--out", str(out), *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "fast_rcnn1" / "checkpoint_last.pt"
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if ckpt.is_file():
                try:
                    if load_checkpoint(ckpt)["iteration"] >= 2:
                        break
                except Exception:  # a checkpoint being replaced: look again
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = json.loads((out / "stages.json").read_text())
    assert state["rpn1"]["status"] == "done" and state["fast_rcnn1"]["status"] == "running"
    killed_at = load_checkpoint(ckpt)["iteration"]
    assert 2 <= killed_at < steps["fast_rcnn1"]
    rpn1_bytes = (out / "rpn1" / "checkpoint_last.pt").read_bytes()

    done = subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(rpn1): done in an earlier run, skipped" in done.stdout + done.stderr
    assert (out / "rpn1" / "checkpoint_last.pt").read_bytes() == rpn1_bytes
    state = json.loads((out / "stages.json").read_text())
    assert all(v["status"] == "done" for v in state.values())
    assert state["fast_rcnn1"]["summary"]["iterations"] == steps["fast_rcnn1"]
    a, b = _weights(whole / "checkpoint_last.pt"), _weights(out / "checkpoint_last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "metrics.json").read_text())["mAP"] == pytest.approx(
        json.loads((whole / "metrics.json").read_text())["mAP"])
