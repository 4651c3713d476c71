"""A run directory is never destroyed: validated first, never overwritten by accident, one writer at a time."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _reliability import finished, run, tiny  # noqa: F401 (fixtures)
from _reliability import REPO, call, det_args, one_error_line, seg_args, snapshot, train_det, train_seg

from visiontasks.engine.checkpoint import load_checkpoint
from visiontasks.engine.rundir import RunLock, clean_temp_files
from visiontasks.errors import InputError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rerun_without_resume_is_refused_and_changes_nothing(run, tiny, capsys):
    before = snapshot(run)
    rc, _, err = call(train_det.main, det_args(tiny, run), capsys)
    line = one_error_line(err)
    assert rc == 2 and str(run) in line and "--resume" in line and "--overwrite" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("extra, key", [
    (["train.lr=fast"], "train.lr"),
    (["train.max_iters=0"], "max_iters"),
    (["model.rpn.fg_iou_thresh=0.6"], "model.rpn"),   # another model: resume refused
    (["data.classes=[square,circle,triangle]"], "classes"),
])
def test_rejected_resume_leaves_the_run_loadable_and_unchanged(run, tiny, capsys, extra, key):
    before = snapshot(run)
    rc, _, err = call(train_det.main, det_args(tiny, run, "--resume", *extra), capsys)
    line = one_error_line(err)
    assert rc == 2 and key in line, line
    assert snapshot(run) == before
    import visiontasks

    visiontasks.load_model(run)  # still loads


def test_resume_with_the_other_task_is_refused(run, tiny, capsys):
    before = snapshot(run)
    rc, _, err = call(train_seg.main, seg_args(tiny, run, "--resume"), capsys)
    line = one_error_line(err)
    assert rc == 2 and "checkpoint_last.pt" in line and "detection" in line
    assert snapshot(run) == before


def test_overwrite_says_what_it_removes_and_starts_over(run, tiny, capsys):
    (run / "notes.txt").write_text("mine")
    rc, _, err = call(train_det.main, det_args(tiny, run, "--overwrite", "train.max_iters=1"), capsys)
    assert rc == 0, err
    warning = [ln for ln in err.splitlines() if "--overwrite removed" in ln]
    assert len(warning) == 1 and "checkpoint_last.pt" in warning[0] and "log.csv" in warning[0]
    assert (run / "notes.txt").read_text() == "mine"  # files that are not the run's are kept
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1]
    assert load_checkpoint(run / "checkpoint_last.pt")["iteration"] == 1


def test_resume_and_overwrite_exclude_each_other(run, tiny, capsys):
    before = snapshot(run)
    rc, _, err = call(train_det.main, det_args(tiny, run, "--resume", "--overwrite"), capsys)
    assert rc == 2 and "not allowed with argument" in one_error_line(err) and "usage:" not in err
    assert snapshot(run) == before


def test_live_lock_stops_a_second_writer_naming_the_holder(run, tiny, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "start": None, "since": "earlier"}
        (run / ".lock").write_text(json.dumps(lock))
        before = snapshot(run)
        start = time.perf_counter()
        rc, _, err = call(train_det.main, det_args(tiny, run, "--resume"), capsys)
        line = one_error_line(err)
        assert rc == 2 and f"pid {holder.pid}" in line and ".lock" in line
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_and_temp_files_of_a_killed_run_are_cleaned(run, tiny, capsys):
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "start": None}))
    (run / ".checkpoint_last.pt.k2x9.tmp").write_bytes(b"half a checkpoint")
    rc, _, err = call(train_det.main, det_args(tiny, run, "--resume"), capsys)
    assert rc == 0, err
    assert "stale lock" in err and "temporary file" in err
    assert not (run / ".lock").exists() and not list(run.glob(".*.tmp"))


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path)
    assert not (tmp_path / ".lock").exists()
    RunLock(tmp_path).release()


def test_clean_temp_files_only_removes_atomic_write_leftovers(tmp_path):
    (tmp_path / "svm").mkdir()
    keep = [tmp_path / "checkpoint_last.pt", tmp_path / "notes.tmp", tmp_path / ".lock"]
    for p in keep:
        p.write_text("x")
    gone = [tmp_path / ".log.csv.abc.tmp", tmp_path / "svm" / ".1-cat.npz.x.tmp"]
    for p in gone:
        p.write_text("x")
    assert sorted(clean_temp_files(tmp_path)) == sorted(gone)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_a_file_is_one_line(tmp_path, tiny, capsys, where):
    target = tmp_path / "x.txt"
    target.write_text("not a folder")
    out = target if where == "file" else target / "run"
    rc, _, err = call(train_det.main, det_args(tiny, out), capsys)
    line = one_error_line(err)
    assert rc == 2 and "x.txt" in line and "not a folder" in line
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("device, words", [("gpu0", "not a device"), ("cuda:7", "cuda:7")])
def test_bad_device_is_one_line_and_writes_nothing(tmp_path, tiny, capsys, device, words):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    out = tmp_path / "run"
    argv = det_args(tiny, out)
    argv[argv.index("--device") + 1] = device
    rc, _, err = call(train_det.main, argv, capsys)
    assert rc == 2 and words in one_error_line(err)
    assert not out.exists()


def test_rejected_command_leaves_no_run_directory(tmp_path, tiny, capsys):
    out = tmp_path / "new"
    rc, _, err = call(train_det.main, det_args(tiny, out, "train.lr=fast"), capsys)
    assert rc == 2 and "train.lr" in one_error_line(err)
    assert not out.exists()


@pytest.mark.slow
def test_two_writer_processes_one_fails_at_once(tiny, tmp_path):
    """Two real train_det.py processes on one --out: the second exits 2 naming the first's pid."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "tools" / "train_det.py"),
           *det_args(tiny, out, "train.max_iters=200", "train.checkpoint_every=0")]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / ".lock").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / ".lock").exists(), "the first writer never took the lock"
        second = subprocess.run(cmd[:2] + ["--resume"] + cmd[2:], env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_kill_9_during_training_then_resume_is_bit_identical(tiny, tmp_path):
    """A run killed with SIGKILL after a checkpoint resumes (taking over its stale lock) to the same
    losses and weights as an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tool = [sys.executable, str(REPO / "tools" / "train_det.py")]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    extra = ["train.max_iters=12", "train.checkpoint_every=2"]
    subprocess.run(tool + det_args(tiny, whole, *extra), env=env, check=True, capture_output=True, timeout=900)
    proc = subprocess.Popen(tool + det_args(tiny, cut, *extra), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        ck = cut / "checkpoint_last.pt"
        if ck.is_file() and proc.poll() is None:
            try:
                if load_checkpoint(ck)["iteration"] >= 4:
                    break
            except InputError:
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (cut / ".lock").exists()  # left behind by the killed process
    res = subprocess.run(tool + det_args(tiny, cut, "--resume", *extra), env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    a, b = load_checkpoint(whole / "checkpoint_last.pt"), load_checkpoint(cut / "checkpoint_last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    rows = lambda p: [(r["iteration"], r["total_loss"]) for r in csv.DictReader(open(p / "log.csv"))]  # noqa: E731
    assert rows(whole) == rows(cut)
