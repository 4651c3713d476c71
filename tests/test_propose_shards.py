"""tools/propose.py over several machines: --shard I/N + --merge, and the ranks of torchrun, give
exactly the files of one process; each shard resumes on its own (issue 25, shards.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_tools_propose import FAST, REPO, _run, _voc_tree, propose_tool

from visiontasks.data.proposals import read_manifest
from visiontasks.detection.proposals.shards import parse_shard, shard_ids
from visiontasks.errors import InputError


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a proposals folder but timing.json (seconds differ run to run) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "timing.json"}


def _timing_ids(folder: Path) -> list[str]:
    return sorted(json.loads((folder / "timing.json").read_text())["seconds"])


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("shards")
    root, out = _voc_tree(base / "VOC"), base / "one"
    assert run_cli_ok(["--root", str(root), "--split", "test", *FAST, "--out", str(out)])
    return root, out


def run_cli_ok(argv: list[str]) -> bool:
    from _common import run_cli

    return run_cli(propose_tool.main, argv) == 0


def test_shard_split_is_every_nth_and_covers_each_id_once() -> None:
    ids = [f"i{k}" for k in range(7)]
    parts = [shard_ids(ids, i, 3) for i in range(3)]
    assert parts == [["i0", "i3", "i6"], ["i1", "i4"], ["i2", "i5"]]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(InputError, match="--shard: must be I/N"):
            parse_shard(bad)


def test_job_array_shards_then_merge_give_the_files_of_one_run(single, tmp_path, capsys) -> None:
    root, one = single
    out = tmp_path / "sharded"
    args = ["--root", str(root), "--split", "test", *FAST, "--out", str(out)]
    rc, stdout, err = _run(propose_tool.main, [*args, "--shard", "1/2"], capsys)
    assert rc == 0 and "(shard 1/2): 1 images proposed" in stdout, err   # img1 of img0 img1 img2
    assert not (out / "manifest.json").exists() and sorted(p.name for p in out.glob("*.npy")) == ["img1.npy"]
    rc, _, err = _run(propose_tool.main, [*args, "--merge"], capsys)      # shard 0 missing: refused
    assert rc == 2 and "2 of 3 images have no proposals yet (e.g. img0)" in err
    with pytest.raises(InputError, match="manifest"):
        read_manifest(out)                                                # unmerged: not readable
    rc, stdout, _ = _run(propose_tool.main, [*args, "--shard", "0/2"], capsys)
    assert rc == 0 and "2 images proposed" in stdout
    rc, stdout, _ = _run(propose_tool.main, [*args, "--shard", "0/2"], capsys)   # resumes: nothing to do
    assert rc == 0 and "0 images proposed, 2 skipped" in stdout
    rc, stdout, err = _run(propose_tool.main, [*args, "--merge"], capsys)
    assert rc == 0 and "merged 2 shard folder(s)" in stdout, err
    assert _files(out) == _files(one) and _timing_ids(out) == _timing_ids(one) == ["img0", "img1", "img2"]
    assert not (out / "shards").exists()


def test_shards_with_other_options_are_refused(single, tmp_path, capsys) -> None:
    root, _ = single
    out = tmp_path / "mixed"
    args = ["--root", str(root), "--split", "test", "--out", str(out)]
    assert _run(propose_tool.main, [*args, *FAST, "--shard", "0/2"], capsys)[0] == 0
    rc, _, err = _run(propose_tool.main, [*args, "--resize-width", "0", "--min-size", "5", "--shard", "1/2"], capsys)
    assert rc == 2 and "manifest.json" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(propose_tool.main, [*args, *FAST, "--shard", "1/3"], capsys)
    assert rc == 2 and "another split count" in err
    rc, _, err = _run(propose_tool.main, [*args, *FAST, "--shard", "1/2", "--overwrite"], capsys)
    assert rc == 2 and "--overwrite" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_ranks_give_the_files_of_one_process(single, tmp_path) -> None:
    root, one = single
    out = tmp_path / "ranks"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(REPO / "tools" / "propose.py"),
           "--root", str(root), "--split", "test", *FAST, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _files(out) == _files(one) and _timing_ids(out) == ["img0", "img1", "img2"]
    # a second launch resumes per rank: nothing left to do, the folder unchanged
    proc = subprocess.run(cmd[:-1] + [str(out)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0 and "0 images proposed" in proc.stdout, proc.stderr[-3000:]
    assert _files(out) == _files(one)
