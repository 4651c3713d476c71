"""R-CNN's feature stage as a job array (``tools/train_det.py --shard I/N``, docs/DISTRIBUTED.md):
``--until finetune``, two shards writing byte for byte the files of one process, the last
``--resume`` computing nothing and fitting, a killed shard resuming, the manifest created once
(atomically) or checked, and one-line errors for bad ``--shard`` values and modes."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from test_rcnn_pipeline import REPO, TRAIN, _overrides, _write_proposals, _write_voc

import train_det  # noqa: E402  (tools/ is on sys.path through test_rcnn_pipeline)
from _common import run_cli  # noqa: E402

from visiontasks.detection.rcnn import RCNN  # noqa: E402
from visiontasks.detection.rcnn import feature_cache  # noqa: E402

CONFIG = str(REPO / "configs/detection/rcnn_small.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("rcnn_shard_data")
    _write_proposals(base / "proposals", _write_voc(base / "voc"))
    return base / "voc", base / "proposals"


def _train(out: Path, data, *extra: str) -> int:
    return run_cli(train_det.main, ["--config", CONFIG, "--out", str(out), "--device", "cpu", *extra,
                                    *_overrides(*data), "train.max_iters=2", "train.checkpoint_every=2"])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, data) -> Path:
    """A run directory fine-tuned only (``--until finetune``)."""
    out = tmp_path_factory.mktemp("rcnn_tuned") / "run"
    torch.manual_seed(0)
    assert _train(out, data, "--until", "finetune") == 0
    return out


@pytest.fixture
def extract_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = RCNN.extract

    def counting(self, image, gt, proposals):
        calls.append(1)
        return original(self, image, gt, proposals)

    monkeypatch.setattr(RCNN, "extract", counting)
    return calls


def _copy(tuned: Path, dest: Path) -> Path:
    shutil.copytree(tuned, dest)
    return dest


def _stage_status(run: Path) -> dict[str, str]:
    return {k: v["status"] for k, v in json.loads((run / "stages.json").read_text()).items()}


def _npz(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "features").glob("*.npz"))}


def test_until_stops_after_the_named_stage(tuned, data, tmp_path, capsys):
    assert _stage_status(tuned) == {"finetune": "done"}
    assert not (tuned / "features").exists() and not (tuned / "metrics.json").exists()
    assert (tuned / "checkpoint_last.pt").is_file()
    assert _train(tmp_path / "other", data, "--until", "fitting") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --until: no stage 'fitting'") and "finetune, features, svm, bbox_reg" in err[-1]
    assert not (tmp_path / "other").exists()  # refused before the run directory changed


def test_two_shards_write_the_files_of_one_process_then_resume_fits(tuned, data, tmp_path, extract_calls, capsys):
    one = _copy(tuned, tmp_path / "one")
    assert _train(one, data, "--resume", "--until", "features") == 0
    assert sorted(_npz(one)) == [f"{i}.npz" for i in TRAIN] and not (one / "svm").exists()
    assert "stage 2/4 (features): started" in capsys.readouterr().out  # counted among all four stages
    two = _copy(tuned, tmp_path / "two")
    extract_calls.clear()
    assert _train(two, data, "--shard", "0/2") == 0
    assert sorted(_npz(two)) == ["a0.npz", "a2.npz"] and len(extract_calls) == 2  # images 0, 2 of the split
    assert "shard 0/2: 2 images cached, 0 skipped" in capsys.readouterr().out
    assert _stage_status(two) == {"finetune": "done"}  # a shard writes no stage record, fits nothing
    assert not (two / "svm").exists() and not (two / "metrics.json").exists()
    assert _train(two, data, "--shard", "1/2") == 0
    assert _npz(two) == _npz(one)  # byte for byte
    assert (two / "features/manifest.json").read_bytes() == (one / "features/manifest.json").read_bytes()
    extract_calls.clear()
    assert _train(two, data, "--resume") == 0  # the last run: every file present, then svm and bbox_reg
    assert not extract_calls and _npz(two) == _npz(one)
    assert _stage_status(two) == dict.fromkeys(["finetune", "features", "svm", "bbox_reg"], "done")
    assert json.loads((two / "stages.json").read_text())["features"]["summary"]["computed"] == 0
    assert not (two / "features/shards").exists() and (two / "metrics.json").is_file()
    assert sorted(p.name for p in (two / "svm").glob("*.npz")) == ["01-red.npz", "02-blue.npz"]
    assert _train(two, data, "--shard", "1/2") == 0  # after the stage: nothing to do
    assert "nothing to cache" in capsys.readouterr().out and not extract_calls


def test_a_killed_shard_resumes_its_own_images(tuned, data, tmp_path, extract_calls, capsys):
    run = _copy(tuned, tmp_path / "run")
    assert _train(run, data, "--shard", "0/2") == 0
    a2 = (run / "features/a2.npz").read_bytes()
    (run / "features/a2.npz").unlink()  # killed before its second image was written, leaving its lock
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = run / "features/shards/0-of-2/.lock"
    # start -1: no process has it, so the lock is stale even if the pid was reused meanwhile
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "start": "-1"}))
    extract_calls.clear()
    capsys.readouterr()
    assert _train(run, data, "--shard", "0/2") == 0
    captured = capsys.readouterr()
    assert "taking over a stale lock" in captured.err and "1 images cached, 1 skipped" in captured.out
    assert len(extract_calls) == 1 and (run / "features/a2.npz").read_bytes() == a2
    assert sorted(_npz(run)) == ["a0.npz", "a2.npz"] and not lock.exists()


@pytest.mark.parametrize("rival_settings, ok", [(False, True), (True, False)])
def test_the_manifest_is_created_once_or_checked(tuned, data, tmp_path, monkeypatch, capsys, rival_settings, ok):
    """Another task creates the manifest between this one's check and its link: the link fails
    (no overwrite) and this task checks the rival's settings instead."""
    run = _copy(tuned, tmp_path / "run")
    real_link = os.link

    def racing_link(src, dst):
        info = json.loads(Path(src).read_text())
        if rival_settings:
            info["crop_size"] = 999
        Path(dst).write_text(json.dumps(info))  # the other task's manifest, written first
        return real_link(src, dst)

    monkeypatch.setattr(feature_cache.os, "link", racing_link)
    assert _train(run, data, "--shard", "0/2") == (0 if ok else 2)
    err = capsys.readouterr().err.strip().splitlines()
    if not ok:
        assert err[-1].startswith(f"error: {run / 'features/manifest.json'}: feature cache made with other "
                                  "settings (crop_size)")
        assert not list((run / "features").glob("*.npz"))
    assert not [p for p in (run / "features").iterdir() if p.name.startswith(".manifest-")]


@pytest.mark.parametrize("value", ["0/0", "3/2", "x", "1/", "-1/2"])
def test_bad_shard_values_are_one_line(value, data, tmp_path, capsys):
    assert _train(tmp_path / "run", data, f"--shard={value}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --shard: must be I/N with 0 <= I < N") and repr(value) in err[0]


def test_a_shard_needs_a_fine_tuned_run_and_no_overwrite(data, tuned, tmp_path, capsys):
    assert _train(tmp_path / "fresh", data, "--shard", "0/2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'fresh' / 'stages.json'}: stage 'finetune' has not finished in this run: "
                   "run tools/train_det.py with --until finetune first"]
    assert _train(_copy(tuned, tmp_path / "run"), data, "--shard", "0/2", "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --shard: cannot be combined with --overwrite")
    assert _train(_copy(tuned, tmp_path / "until"), data, "--shard", "0/2", "--until", "features") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --shard: ") and "--until" in err[0]
    assert not (tmp_path / "until" / "features").exists()
    assert not (tmp_path / "run/features").exists()


@pytest.mark.parametrize("first, second", [("fp32", "bf16"), ("bf16", "fp32")])
def test_a_cache_of_another_feature_precision_is_not_resumed(tuned, data, tmp_path, first, second):
    """model.feature_precision is part of the cache's settings in both directions (the manifest
    names it only when it is not fp32). The tools refuse earlier (the checkpoint's config), so the
    manifest check is called directly, as a run with a changed config and the same folder would."""
    from visiontasks.config import load_config
    from visiontasks.engine.run import build_model
    from visiontasks.errors import InputError

    cfg = load_config(CONFIG, _overrides(*data))
    model = build_model(cfg, 3)
    folder = tmp_path / "features"
    model.feature_precision = first
    feature_cache.open_feature_cache(cfg, model, folder)
    created = (folder / "manifest.json").read_bytes()
    feature_cache.open_feature_cache(cfg, model, folder)  # the same settings: checked, kept
    model.feature_precision = second
    with pytest.raises(InputError, match=r"other settings \(precision\)"):
        feature_cache.open_feature_cache(cfg, model, folder)
    assert (folder / "manifest.json").read_bytes() == created
