"""Fast R-CNN through the tools: proposals computed with ``data.proposals: auto`` (or read from a
folder) into tools/train_det.py, tools/eval.py det --checkpoint and predict(); bad proposal
folders give one line naming the file and exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = "[circle,square,triangle]"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from visiontasks.data import build_embedded_dataset

    return build_embedded_dataset(tmp_path_factory.mktemp("tiny"), seed=3, num_trainval=12, num_test=6)


def _run(args, home, timeout=600):
    env = {**os.environ, "VISIONTASKS_HOME": str(home), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _train_args(out, root, *extra):
    return ["tools/train_det.py", "--config", "configs/detection/fast_rcnn_small.yaml", "--out", str(out),
            "data.dataset=voc", f"data.root={root}", f"data.classes={CLASSES}", "data.num_workers=0",
            "train.max_iters=12", "train.batch_size=2", "train.warmup_iters=2", "train.checkpoint_every=6", *extra]


@pytest.fixture(scope="module")
def fast_run(tiny_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("run") / "fast"
    r = _run(_train_args(out, tiny_root), home)
    assert r.returncode == 0, r.stderr[-2000:]
    return out, home


def _one_error_line(r) -> str:
    """Exit code 2, no traceback, and the last stderr line is the error (progress bars may precede it)."""
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), r.stderr[-2000:]
    return last


def _proposal_folder(home: Path) -> Path:
    folders = [p.parent for p in (home / "proposals").rglob("manifest.json")]
    assert len(folders) == 1, folders
    return folders[0]


def test_train_det_with_auto_proposals_writes_a_scored_run(fast_run, tiny_root):
    out, home = fast_run
    folder = _proposal_folder(home)
    assert len(list(folder.glob("*.npy"))) == 18  # both splits, one file per image
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["method"] == "selective_search" and manifest["params"]["resize_width"] is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0
    assert json.loads((out / "stages.json").read_text())["sgd"]["status"] == "done"


def test_eval_checkpoint_with_a_proposal_folder_and_on_the_fly(fast_run, tiny_root, tmp_path):
    out, home = fast_run
    folder = _proposal_folder(home)
    common = ["tools/eval.py", "det", "--checkpoint", str(out / "checkpoint_last.pt"), "--root", str(tiny_root),
              "--split", "test", "--classes", "circle", "square", "triangle"]
    r1 = _run([*common, "--proposals", str(folder), "--out", str(tmp_path / "a.json"),
               "--write-results", str(tmp_path / "comp4")], home)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = _run([*common, "--out", str(tmp_path / "b.json")], home)  # proposals computed per image
    assert r2.returncode == 0, r2.stderr[-2000:]
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-9)  # same method and parameters: same proposals
    assert len(list((tmp_path / "comp4").glob("comp4_det_test_*.txt"))) == 3
    import visiontasks

    model = visiontasks.load_model(out, preset="evaluate")
    assert model.model.needs_proposals
    result = model.predict(str(tiny_root / "JPEGImages" / "000000.jpg"))  # selective search inside
    assert result.boxes.shape[-1] == 4


def test_stale_missing_and_empty_proposals_are_one_line_errors(fast_run, tiny_root, tmp_path):
    out, home = fast_run
    folder = _proposal_folder(home)
    from visiontasks.data.proposals import write_manifest

    stale = tmp_path / "stale"
    write_manifest(stale, {**json.loads((folder / "manifest.json").read_text())["params"], "mode": "quality"})
    r = _run(_train_args(tmp_path / "r1", tiny_root, f"data.proposals={stale}"), home)
    line = _one_error_line(r)
    assert "manifest.json" in line and "mode='quality'" in line
    # the same parameters but no files: found before training starts, naming the first missing file
    missing = tmp_path / "missing"
    write_manifest(missing, json.loads((folder / "manifest.json").read_text())["params"])
    r = _run(_train_args(tmp_path / "r2", tiny_root, f"data.proposals={missing}"), home)
    assert ".npy" in _one_error_line(r) and "train:" not in r.stderr
    # an image whose file holds no boxes
    from visiontasks.data.proposals import write_proposals

    for f in folder.glob("*.npy"):
        write_proposals(missing, f.stem, np.load(f))
    write_proposals(missing, "000003", np.zeros((0, 4), np.float32))
    r = _run(_train_args(tmp_path / "r3", tiny_root, f"data.proposals={missing}", "train.batch_size=12",
                         "train.max_iters=1"), home)
    assert "000003.npy" in _one_error_line(r)
    # a model that makes its own proposals refuses a proposal folder
    r = _run(["tools/train_det.py", "--out", str(tmp_path / "r4"), "data.dataset=voc", f"data.root={tiny_root}",
              f"data.classes={CLASSES}", f"data.proposals={folder}"], home)
    assert "makes its own proposals" in _one_error_line(r)


def test_spp_net_runs_r_cnns_fitting_stages_through_the_tools(tiny_root, fast_run, tmp_path):
    _, home = fast_run  # the same proposal parameters: the auto folder is reused
    out = tmp_path / "spp"
    args = _train_args(out, tiny_root)
    args[2] = "configs/detection/spp_net_small.yaml"
    r = _run([*args, "model.scales=[128]"], home)
    assert r.returncode == 0, r.stderr[-2000:]
    stages = json.loads((out / "stages.json").read_text())
    assert [k for k in stages] == ["finetune", "features", "svm", "bbox_reg"]
    assert all(v["status"] == "done" for v in stages.values())
    assert len(list((out / "svm").glob("*.npz"))) == 3 and len(list((out / "features").glob("*.npz"))) == 12
    import visiontasks

    model = visiontasks.load_model(out, preset="evaluate")
    assert model.model.roi_head.fitted  # the SVM predictor is what the checkpoint holds
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["mAP"] <= 1.0
