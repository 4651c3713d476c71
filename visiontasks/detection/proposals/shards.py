"""Splitting proposal precomputation over machines: ``--shard I/N`` or the ranks of ``torchrun``.

Shard ``I`` of ``N`` takes the split's ids ``I, I + N, I + 2N, …`` (every N-th, so slow and fast
images spread evenly) and writes their ``<id>.npy`` files into the shared proposals folder, as one
process would. What a shard knows of itself lives in ``DIR/shards/<I>-of-<N>/``: its
``manifest.json`` (the parameters, checked on a rerun and against the other shards) and its
``timing.json``. Rerunning a shard skips the ids whose file exists (resumable per shard).

The folder's own ``manifest.json`` is written once, by :func:`merge_shards`, after every id of the
split has its file: under ``torchrun`` rank 0 runs it after a barrier; for a job array the
``--merge`` step (a job that depends on the array) runs it. It merges the shards' timings into
``timing.json`` and removes ``DIR/shards/``. Until then the folder has no manifest, so a reader
(:class:`~visiontasks.data.proposals.ProposalStore`) refuses it rather than use half of it. The
files are exactly those of one process: each ``.npy`` depends only on its image and the parameters.

Shape shorthand: none (files in, files out).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from visiontasks.data.proposals import (MANIFEST, check_params, proposals_path, read_manifest, read_timing,
                                        write_manifest, write_timing)
from visiontasks.errors import InputError

__all__ = ["SHARDS", "parse_shard", "shard_ids", "shard_dir", "prepare_shard", "merge_shards", "clear_folder"]

SHARDS = "shards"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        InputError: not of that form (one line naming ``--shard``).
    """
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise InputError("--shard", f"must be I/N with 0 <= I < N (e.g. 0/4 for the first of four), got {text!r}")
    return i, n


def shard_ids(ids: Sequence[str], index: int, count: int) -> list[str]:
    """The ids of shard ``index`` of ``count``: every ``count``-th id from position ``index``."""
    return list(ids[index::count])


def shard_dir(out: str | Path, index: int, count: int) -> Path:
    """``DIR/shards/<index>-of-<count>``."""
    return Path(out) / SHARDS / f"{index}-of-{count}"


def prepare_shard(out: str | Path, params: Mapping[str, Any], index: int, count: int) -> Path:
    """Checks ``out`` for shard ``index`` of ``count`` and writes the shard's manifest; returns its folder.

    A folder already merged (``manifest.json``) is checked against ``params`` (a rerun then has
    nothing to do); shards of another count or other parameters are refused.

    Raises:
        InputError: other parameters, another shard count, or ``.npy`` files of unknown origin.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "proposals folder exists and is not a folder")
    hint = "use the same options on every shard, or clear the folder"
    if (out / MANIFEST).exists():
        read_manifest(out)
        check_params(out, dict(params), asker="this shard", hint=hint)
    others = sorted((out / SHARDS).glob("*-of-*")) if (out / SHARDS).is_dir() else []
    for other in others:
        if not other.name.endswith(f"-of-{count}"):
            raise InputError(other, f"a shard of another split count (this run: {count}); {hint}")
        if (other / MANIFEST).exists():
            check_params(other, dict(params), asker="this shard", hint=hint)
    if not (out / MANIFEST).exists() and not others and out.is_dir() and any(out.glob("*.npy")):
        raise InputError(out, "holds .npy files but no manifest.json, so their parameters are unknown; "
                              "delete them or choose another folder")
    folder = shard_dir(out, index, count)
    if not (folder / MANIFEST).exists():
        write_manifest(folder, dict(params))
    return folder


def merge_shards(out: str | Path, ids: Sequence[str], params: Mapping[str, Any]) -> int:
    """Writes ``out/manifest.json`` and ``timing.json`` once every id has its file; removes ``shards/``.

    Args:
        out: the proposals folder.
        ids: every id of the split.
        params: the parameters every shard used.

    Returns:
        The number of shard folders merged (0 when the folder was merged before).

    Raises:
        InputError: an id has no file yet (naming how many and the first), or a shard used other parameters.
    """
    out = Path(out)
    missing = [i for i in ids if not proposals_path(out, i).is_file()]
    if missing:
        raise InputError(out, f"{len(missing)} of {len(ids)} images have no proposals yet (e.g. {missing[0]}); "
                              "run the missing shards (rerunning a shard resumes it), then merge")
    shards = sorted((out / SHARDS).glob("*-of-*")) if (out / SHARDS).is_dir() else []
    timing = read_timing(out) if (out / MANIFEST).exists() else {}
    for folder in shards:
        if (folder / MANIFEST).exists():
            check_params(folder, dict(params), asker="the merge", hint="merge with the shards' options")
        timing.update(read_timing(folder))
    if (out / MANIFEST).exists():
        check_params(out, dict(params), asker="the merge", hint="merge with the shards' options")
    else:
        write_manifest(out, dict(params))
    write_timing(out, {i: timing[i] for i in ids if i in timing})
    if shards:
        shutil.rmtree(out / SHARDS)
    return len(shards)


def clear_folder(out: str | Path) -> None:
    """Deletes the proposals, manifest, timing and shard folders of ``out`` (``--overwrite``, run once)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "proposals folder exists and is not a folder")
    if not out.is_dir():
        return
    for path in [*out.glob("*.npy"), out / "timing.json", out / MANIFEST]:
        path.unlink(missing_ok=True)
    shutil.rmtree(out / SHARDS, ignore_errors=True)
