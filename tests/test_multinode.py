"""More than one machine, shown on this one (slow; issue 25, docs/DISTRIBUTED.md):

- ``torchrun --nnodes 2`` with two agents on localhost (c10d rendezvous, loopback only) trains the
  default detector for a few iterations and resumes it, which is how a two-machine run starts;
- R-CNN's feature cache split over two ranks writes the arrays of one process.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _reliability import det_args, tiny  # noqa: F401  (tiny is a fixture)
from test_rcnn_pipeline import REPO, _overrides, _write_proposals, _write_voc

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}


def _free_port() -> int:
    """A port the kernel hands out on the loopback interface (free when asked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_agents(tool_args: list[str], rdzv_id: str) -> list[subprocess.CompletedProcess]:
    """Two torchrun agents (``--nnodes 2``, one process each) meeting at a c10d rendezvous on 127.0.0.1."""
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", rdzv_id,
           "--local-addr", "127.0.0.1", str(REPO / "tools" / "train_det.py"), *tool_args]
    agents = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
              for _ in range(2)]
    done = []
    for agent in agents:
        out, err = agent.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(cmd, agent.returncode, out, err))
    return done


def test_two_nodes_on_localhost_train_and_resume(tiny, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "run"
    first = _two_agents(det_args(tiny, out), "vt-first")
    assert all(p.returncode == 0 for p in first), first[0].stderr[-3000:] + first[1].stderr[-3000:]
    state = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["iteration"] == 2
    second = _two_agents(det_args(tiny, out, "--resume", "train.max_iters=4"), "vt-second")
    assert all(p.returncode == 0 for p in second), second[0].stderr[-3000:] + second[1].stderr[-3000:]
    state = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["iteration"] == 4
    with open(out / "log.csv", newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]  # resumed, not restarted


def _features(run: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.stem: dict(np.load(p, allow_pickle=False)) for p in sorted((run / "features").glob("*.npz"))}


def test_feature_cache_over_two_ranks_is_the_cache_of_one(tmp_path) -> None:
    root, proposals = tmp_path / "voc", tmp_path / "proposals"
    _write_proposals(proposals, _write_voc(root))
    args = ["--config", str(REPO / "configs/detection/rcnn_small.yaml"), "--device", "cpu",
            *_overrides(root, proposals)]
    base = tmp_path / "base"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_det.py"), "--out", str(base), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {}
    for nproc in (1, 2):  # the same fine-tuned weights; only the feature stage and later run again
        run = tmp_path / f"ranks{nproc}"
        shutil.copytree(base, run)
        for folder in ("features", "svm", "bbox_reg"):
            shutil.rmtree(run / folder)
        stages = json.loads((run / "stages.json").read_text())
        (run / "stages.json").write_text(json.dumps({k: v for k, v in stages.items() if k == "finetune"}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), str(REPO / "tools" / "train_det.py"),
               "--out", str(run), "--resume", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=ENV)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((run / "stages.json").read_text())["features"]["summary"]
        assert (summary["computed"], summary["ranks"]) == (3, nproc)
        runs[nproc] = _features(run)
    assert sorted(runs[2]) == sorted(runs[1]) == ["a0", "a1", "a2"]
    for image_id, arrays in runs[1].items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(runs[2][image_id][key], value, err_msg=f"{image_id} {key}")
    assert (tmp_path / "ranks2" / "features" / "manifest.json").read_bytes() == \
        (tmp_path / "ranks1" / "features" / "manifest.json").read_bytes()
