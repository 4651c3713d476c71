"""What a training stage declares, and what the engine does with it: folders, resume skipping, trainer."""
from __future__ import annotations

import json

import pytest

from visiontasks.engine.rundir import existing_run_files, open_run_dir
from visiontasks.engine.stages import (SGDStage, Stage, StageContext, declared, recorded_folders, run_stages,
                                       stage_folders)
from visiontasks.errors import InputError


class _Writes(Stage):
    def __init__(self, name, folders=(), skip=True):
        self.name, self.folders, self.skip_when_done, self.calls = name, tuple(folders), skip, 0

    def run(self, ctx):
        self.calls += 1
        for f in self.folders:
            (ctx.out_dir / f).mkdir(exist_ok=True)
        return {}


def _ctx(out, resume):
    return StageContext(cfg={}, out_dir=out, model=None, train_dataset=None, test_dataset=None, device="cpu",
                        resume=resume, make_trainer=None, eval_fn=None)


def test_defaults_come_from_stage_and_sgd_declares_its_own():
    class Bare:  # any object with name and run is a stage
        name = "bare"

    assert (declared(Bare(), "folders"), declared(Bare(), "skip_when_done"), declared(Bare(), "needs_trainer")) \
        == ((), True, False)
    sgd = SGDStage()
    assert (sgd.folders, sgd.skip_when_done, sgd.needs_trainer) == ((), False, True)


def test_folders_are_collected_in_order_and_must_be_plain_names():
    assert stage_folders([_Writes("a", ["x", "y"]), _Writes("b", ["y", "z"])]) == ["x", "y", "z"]
    for bad in ("../up", "a/b", "..", ""):
        with pytest.raises(ValueError, match="plain names"):
            stage_folders([_Writes("a", [bad])])


def test_a_stage_that_resumes_inside_is_entered_again_and_folders_are_recorded(tmp_path):
    inside, once = _Writes("inside", ["cache"], skip=False), _Writes("once", ["fit"])
    run_stages([inside, once], _ctx(tmp_path, False))
    run_stages([inside, once], _ctx(tmp_path, True))
    assert (inside.calls, once.calls) == (2, 1)
    state = json.loads((tmp_path / "stages.json").read_text())
    assert state["inside"]["folders"] == ["cache"] and state["once"]["folders"] == ["fit"]
    assert recorded_folders(tmp_path) == ["cache", "fit"]


def test_recorded_folders_drop_names_that_leave_the_run(tmp_path):
    (tmp_path / "stages.json").write_text(json.dumps({"s": {"status": "done", "folders": ["ok", "../x", "/abs", 3]}}))
    assert recorded_folders(tmp_path) == ["ok"]
    assert recorded_folders(tmp_path / "missing") == []
    (tmp_path / "stages.json").write_text("{torn")
    assert recorded_folders(tmp_path) == []


def test_declared_folders_mark_a_run_and_overwrite_removes_them(tmp_path):
    run = tmp_path / "run"
    (run / "fit").mkdir(parents=True)
    (run / "fit" / "w.npz").write_bytes(b"x")
    (run / "mine").mkdir()
    assert existing_run_files(run) == []  # no stage declares them: not a run
    assert existing_run_files(run, ["fit"]) == ["fit"]
    with pytest.raises(InputError, match="already holds a run \\(fit\\)"):
        open_run_dir(run, folders=["fit"])
    lines = []
    open_run_dir(run, overwrite=True, folders=["fit"], log=lines.append).release()
    assert not (run / "fit").exists() and (run / "mine").is_dir()
    assert any("removed the earlier run's fit" in line for line in lines)
