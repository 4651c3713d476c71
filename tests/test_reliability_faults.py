"""Faults: a full disk, torn logs of a killed run, OS errors, --debug, progress bars before the error line."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from _reliability import finished, run, tiny  # noqa: F401 (fixtures)
from _reliability import call, det_args, one_error_line, run_cli, snapshot, train_det
from _common import os_error_line

from visiontasks.engine.checkpoint import load_checkpoint
from visiontasks.errors import InputError
from visiontasks.io import atomic_write


def test_atomic_write_names_the_file_on_a_full_disk(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("previous")
    with pytest.raises(OSError) as info:
        with atomic_write(path, "w") as f:
            f.write("new")
            raise RuntimeError("writer failed") from OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert os_error_line(info.value) == f"no space left on device: {path}"
    assert path.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize("err, line", [
    (OSError(errno.EACCES, "Permission denied", "/r/x"), "/r/x: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/r/x"), "/r/x: read-only file system"),
    (OSError(errno.ENOTDIR, "Not a directory", "/r/f/x"), "/r/f/x: a file is in the way where a folder is needed"),
    (OSError(errno.ENOSPC, "No space left on device", "/r/c.pt"), "no space left on device: /r/c.pt"),
])
def test_os_errors_become_one_line_naming_the_path(err, line, capsys):
    def main(argv):
        raise err

    assert run_cli(main, []) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {line}"


def test_debug_flag_lets_the_traceback_through(capsys):
    seen = []

    def main(argv):
        seen.append(argv)
        raise InputError("/data/x.xml", "broken")

    assert run_cli(main, ["a"]) == 2
    with pytest.raises(InputError):
        run_cli(main, ["a", "--debug"])
    assert seen == [["a"], ["a"]]  # --debug is taken out before the tool parses its arguments


def test_progress_bar_is_closed_before_the_error_line(capsys):
    from tqdm import tqdm

    def main(argv):
        bar = tqdm(total=10, desc="train")
        bar.update(3)
        raise InputError("/data/000005.jpg", "cannot decode image")

    assert run_cli(main, []) == 2
    line = one_error_line(capsys.readouterr().err)  # asserts it is the last line printed
    assert line == "error: /data/000005.jpg: cannot decode image"


def test_torn_last_lines_of_the_logs_are_dropped_on_resume(run, tiny, capsys):
    with open(run / "eval_log.jsonl", "a") as f:
        f.write('{"iteration": 2, "mAP": 0.1}\n{"iterat')
    with open(run / "log.csv", "a") as f:
        f.write("3,0.00")
    rc, _, err = call(train_det.main, det_args(tiny, run, "--resume", "train.max_iters=3"), capsys)
    assert rc == 0, err
    assert "eval_log.jsonl: dropped a torn last line" in err and "log.csv: dropped a torn last row" in err
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    for line in (run / "eval_log.jsonl").read_text().splitlines():
        json.loads(line)


def test_a_torn_line_in_the_middle_is_an_error_naming_it(run, tiny, capsys):
    lines = (run / "log.csv").read_text().splitlines()
    (run / "log.csv").write_text("\n".join([lines[0], "x,y", *lines[1:]]) + "\n")
    before = snapshot(run)
    rc, _, err = call(train_det.main, det_args(tiny, run, "--resume", "train.max_iters=3"), capsys)
    line = one_error_line(err)
    assert rc == 2 and "log.csv: line 2" in line
    assert snapshot(run) == before  # the logs are read before anything is written


def test_uncreatable_out_is_one_line(tiny, capsys):
    rc, _, err = call(train_det.main, det_args(tiny, Path("/proc/no-such-pid/run")), capsys)
    assert rc == 2 and "/proc/no-such-pid" in one_error_line(err)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0


def test_full_disk_keeps_the_previous_checkpoint_and_says_no_space(run, tiny, tmp_path, capsys):
    """On a real small tmpfs (mounted when the test may; skipped otherwise) nearly filled up."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    if not _mount_tmpfs(mnt, f"{size // 1024 + 4096}k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    try:
        target = mnt / "run"
        shutil.copytree(run, target)
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 256 * 1024))  # leave 256 KB: less than a checkpoint
        rc, _, err = call(train_det.main, det_args(tiny, target, "--resume", "train.max_iters=4"), capsys)
        line = one_error_line(err)
        assert rc == 2 and "no space left on device" in line and str(target) in line, line
        assert load_checkpoint(target / "checkpoint_last.pt")["iteration"] == 2
        assert not list(target.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)
