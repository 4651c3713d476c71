"""Preemption of whole runs (slow): many signals at random points of a detector's training, a signal in each of
R-CNN's fitting stages, and two DDP ranks stopping at the same iteration. Each interrupted chain, resumed,
ends with the uninterrupted run's weights (engine/preempt.py, docs/RELIABILITY.md)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _reliability import tiny  # noqa: F401 (fixture)
from _reliability import REPO, det_args
from test_reliability_preempt import _interrupted_line, _logged_iterations, _rows, _signal_once, _weights

from visiontasks.engine.checkpoint import load_checkpoint

TOOL = [sys.executable, str(Path(__file__).resolve().parent / "_preempt_tool.py")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}

pytestmark = pytest.mark.slow


def test_many_signals_at_random_points_then_resume_equals_the_uninterrupted_run(tiny, tmp_path):  # noqa: F811
    """6 signals (SIGTERM and SIGINT in turn), each at a random point after one or two new steps; the run is
    resumed after each. Evaluations are due every 4 iterations, checkpoints every 5.

    The random point is counted in logged steps plus at most 0.1 s, not in seconds alone: a 0.4 s delay let a fast
    machine run 6 steps per signal, and the fifth run then finished its 30 iterations before its signal came."""
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    extra = ["train.max_iters=30", "train.checkpoint_every=5", "train.eval_every=4"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    res = subprocess.run(TOOL + ["train_det", *det_args(tiny, whole, *extra)], env=ENV, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    stops = []
    for k in range(6):
        signum = (signal.SIGTERM, signal.SIGINT)[k % 2]
        resume = ["--resume"] if k else []
        res = _signal_once(TOOL + ["train_det", *det_args(tiny, cut, *resume, *extra)], cut, signum, rng, ENV,
                           min_rows=rng.randint(1, 2), max_delay=0.1)
        if res.returncode == 0:  # the run ended before the signal: nothing left to interrupt
            break
        assert res.returncode == CODES[signum], (seed, res.stderr)
        _interrupted_line(res.stderr)
        stops.append(load_checkpoint(cut / "checkpoint_last.pt")["iteration"])
        assert _logged_iterations(cut) == stops[-1], (seed, res.stderr)
    assert len(stops) >= 5 and stops == sorted(stops), (seed, stops)
    res = subprocess.run(TOOL + ["train_det", *det_args(tiny, cut, "--resume", *extra)], env=ENV,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(cut)[k]), (seed, stops, k)
    assert _rows(whole) == _rows(cut), (seed, stops)
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "seconds")} for r in rows]  # noqa: E731
    assert drop(_rows(whole, "eval_log.jsonl")) == drop(_rows(cut, "eval_log.jsonl")), (seed, stops)


# ---------------------------------------------------------------- R-CNN's fitting stages
def _stage_running(out: Path) -> str | None:
    try:
        state = json.loads((out / "stages.json").read_text())
    except (OSError, ValueError):
        return None
    return next((name for name, s in state.items() if s.get("status") == "running"), None)


def _signal_in_stage(cmd: list[str], out: Path, stage: str, signum: int, env: dict, ready=lambda: True
                     ) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (_stage_running(out) == stage and ready()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _npz(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            out[path.name] = {k: npz[k] for k in npz.files}
    return out


def test_a_signal_in_each_rcnn_fitting_stage_then_resume_equals_the_uninterrupted_run(tmp_path):
    from test_rcnn_pipeline import _overrides, _write_proposals, _write_voc

    gts = _write_voc(tmp_path / "voc")
    _write_proposals(tmp_path / "proposals", gts)
    args = lambda out, *more: ["train_det", "--config", str(REPO / "configs/detection/rcnn_small.yaml"),  # noqa: E731
                               "--out", str(out), "--device", "cpu", *more,
                               *_overrides(tmp_path / "voc", tmp_path / "proposals")]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    res = subprocess.run(TOOL + args(whole), env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    slow = {**ENV, "VISIONTASKS_TEST_FIT_SLEEP": "0.3"}  # per cached image written or read
    plan = [("features", signal.SIGTERM, lambda: any((cut / "features").glob("*.npz"))),
            ("svm", signal.SIGINT, lambda: True), ("bbox_reg", signal.SIGTERM, lambda: True)]
    for k, (stage, signum, ready) in enumerate(plan):
        res = _signal_in_stage(TOOL + args(cut, *(["--resume"] if k else [])), cut, stage, signum, slow, ready)
        assert res.returncode == CODES[signum], (stage, res.stderr)
        line = _interrupted_line(res.stderr)
        assert _stage_running(cut) == stage, (stage, line)  # entered again on resume
        if stage == "features":
            assert "feature cache (images):" in line and 0 < len(list((cut / "features").glob("*.npz"))) < 3, line
    res = subprocess.run(TOOL + args(cut, "--resume"), env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    for folder in ("features", "svm", "bbox_reg"):
        a, b = _npz(whole / folder), _npz(cut / folder)
        assert a.keys() == b.keys() and a, folder
        for name in a:
            for key in a[name]:
                assert np.array_equal(a[name][key], b[name][key]), (folder, name, key)
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(cut)[k]), k
    assert json.loads((whole / "metrics.json").read_text()) == json.loads((cut / "metrics.json").read_text())


# ---------------------------------------------------------------- two DDP ranks
WORLD = 2


def _ddp_worker(rank: int, out: str, rendezvous: str, iters: int, resume: bool) -> None:
    os.environ.pop("MASTER_PORT", None)
    os.environ.update(VISIONTASKS_DIST_INIT_METHOD=rendezvous, RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), VISIONTASKS_TEST_STEP_SLEEP="0.05")
    torch.set_num_threads(1)
    import _preempt_train

    from visiontasks.engine.distributed import cleanup
    from visiontasks.engine.preempt import Preempted, handling_signals

    trainer = _preempt_train.make_trainer(out, iters)
    if resume:
        trainer.resume()
    result = {"rank": rank, "iteration": None, "signum": None}
    try:
        with handling_signals():
            trainer.train()
    except Preempted as exc:
        result.update(iteration=trainer.iteration, signum=exc.signum)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    cleanup()


def _spawn(out: Path, tag: str, iters: int, resume: bool = False):
    rendezvous = (out.parent / f"rendezvous-{out.name}-{tag}").as_uri()
    return mp.start_processes(_ddp_worker, args=(str(out), rendezvous, iters, resume), nprocs=WORLD, join=False,
                              start_method="spawn")


def test_two_ranks_stop_at_the_same_iteration_and_resume_to_the_uninterrupted_weights(tmp_path):
    """SIGTERM reaches rank 1 only; rank 0 learns it through the all-reduced flag at the next step boundary."""
    iters = 40
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ctx = _spawn(whole, "a", iters)
    ctx.join()
    ctx = _spawn(cut, "b", iters)
    deadline = time.time() + 300
    while _logged_iterations(cut) < 3 and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.3))
    os.kill(ctx.processes[1].pid, signal.SIGTERM)
    while not ctx.join():
        pass
    results = [json.loads((cut / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert results[0]["signum"] == results[1]["signum"] == signal.SIGTERM, results
    stopped = results[0]["iteration"]
    assert stopped is not None and results[1]["iteration"] == stopped < iters, results
    state = load_checkpoint(cut / "checkpoint_last.pt")
    assert state["iteration"] == stopped and len(state["rng"]) == WORLD
    ctx = _spawn(cut, "c", iters, resume=True)
    while not ctx.join():
        pass
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(cut)[k]), (stopped, k)
    assert _rows(whole) == _rows(cut)
