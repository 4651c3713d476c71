"""Guarding a run directory: one writer at a time, no finished run overwritten by accident.

:func:`open_run_dir` is called by :func:`visiontasks.engine.run.run_training` after the command has
been validated (config, data, model, device, resume compatibility) and before anything in the
run directory changes. It

1. refuses a path that is a file, or a folder it cannot write to;
2. takes ``OUT/.lock`` (``{"pid", "host", "start"}``, created with ``O_EXCL``): a second writer fails
   at once naming the holder; a lock left by a process that no longer runs on this host (killed)
   is taken over with a warning line;
3. refuses a folder that already holds a run (a checkpoint, a log, metrics, stage records, the
   folders the training stages declare) unless ``resume`` (continue it) or ``overwrite`` (its run
   files and folders are removed and listed on one line);
4. removes the temporary files of atomic writes killed half-way (``.<name>.*.tmp``).

Shape shorthand: none (files only).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from visiontasks.config import upgrade_renamed
from visiontasks.errors import InputError

__all__ = ["RunLock", "open_run_dir", "RUN_FILES", "RUN_FOLDERS", "existing_run_files", "clean_temp_files"]

LOCK_NAME = ".lock"
#: Files a training run writes (an existing one marks the folder as holding a run, except config.yaml alone).
RUN_FILES = ("checkpoint_last.pt", "log.csv", "eval_log.jsonl", "metrics.json", "stages.json", "loss.png",
             "pr_curves.png", "config.yaml")
#: Folders every training run writes (the Trainer's TensorBoard events); a run's stages add the
#: folders they declare (``Stage.folders``, passed as ``folders``).
RUN_FOLDERS = ("tb",)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of stat, counted after the "(comm)" field


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``, when recorded) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start  # a reused pid has another start time


class RunLock:
    """``OUT/.lock`` held by this process (see the module docstring).

    Args:
        folder: the run directory (must exist).
        warn: where warning lines go (default stderr).

    Raises:
        InputError: another live process holds the lock (its pid, host and start are named).
    """

    def __init__(self, folder: Path, warn: Callable[[str], None] = _warn) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            if self._create():
                return
            holder = self._read()
            if holder is not None and not self._stale(holder):
                raise InputError(self.path, f"run directory in use by pid {holder.get('pid')} on host "
                                            f"{holder.get('host')!r} since {holder.get('since')}; wait for it to "
                                            "finish (or delete this file if that process is gone)")
            who = "unreadable lock" if holder is None else f"pid {holder.get('pid')} on {holder.get('host')!r}"
            warn(f"{self.path}: taking over a stale lock ({who}, no longer running)")
            if self._read() == holder:  # still the stale one (not replaced by a racing process)
                self.path.unlink(missing_ok=True)
        raise InputError(self.path, "could not take the run directory's lock (another process keeps taking it)")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.info))
        return True

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _stale(holder: dict) -> bool:
        if not holder:  # vanished between the attempts: try again
            return True
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell whether a process on another machine runs
        try:
            pid = int(holder["pid"])
        except (KeyError, TypeError, ValueError):
            return True
        return not _alive(pid, holder.get("start"))

    def release(self) -> None:
        """Deletes the lock if it is still ours."""
        if self._read() == self.info:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def existing_run_files(folder: Path, folders: Sequence[str] = ()) -> list[str]:
    """Names of the run files and folders present in ``folder``.

    Args:
        folder: the run directory.
        folders: the stages' folders (plain names) besides :data:`RUN_FOLDERS`.

    Returns:
        The present names of :data:`RUN_FILES`, :data:`RUN_FOLDERS` and ``folders``, in that order.
    """
    names = dict.fromkeys((*RUN_FILES, *RUN_FOLDERS, *folders))
    return [n for n in names if (folder / n).exists()]


def clean_temp_files(folder: Path) -> list[Path]:
    """Removes leftover temporaries of killed atomic writes (``.<name>.<random>.tmp``) under ``folder``."""
    removed = []
    for tmp in sorted(folder.rglob(".*.tmp")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_out_dir(out: Path) -> None:
    """Refuses an output path that is a file or lies under one, or a folder that is not writable."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError(p, "is a file, not a folder (give --out a folder)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise InputError(p, "folder is not writable (permission denied); choose another --out")
            return


def open_run_dir(out: str | os.PathLike[str], resume: bool = False, overwrite: bool = False,
                 log: Callable[[str], None] = _warn, folders: Sequence[str] = ()) -> RunLock:
    """Checks and locks the run directory ``out``; creates it if needed.

    Args:
        out: the run directory.
        resume: continue the run in it (its files are kept).
        overwrite: remove the run files of an earlier run (listed in a warning line).
        log: where warning lines go.
        folders: the folders the run's training stages write (and an earlier run's stages wrote),
            plain names; they count as run files.

    Returns:
        The held :class:`RunLock` (release it when the run ends; a killed process leaves a
        stale lock that the next start takes over).

    Raises:
        InputError: ``out`` is a file or unwritable, is locked by a live process, or holds a run
            and neither ``resume`` nor ``overwrite`` is given.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other (continue the run, or start it over)")
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the run directory ({exc.strerror or exc})") from None
    lock = RunLock(out, warn=log)
    try:
        present = existing_run_files(out, folders)
        if present and present != ["config.yaml"] and not resume:
            if not overwrite:
                raise InputError(out, f"already holds a run ({', '.join(present)}); pass --resume to continue "
                                      "it or --overwrite to delete it and start over, or choose another --out")
            for name in present:
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            log(f"{out}: --overwrite removed the earlier run's {', '.join(present)}")
        removed = clean_temp_files(out)
        if removed:
            log(f"{out}: removed {len(removed)} temporary file(s) of an interrupted write "
                f"({', '.join(str(p.relative_to(out)) for p in removed[:3])}{' …' if len(removed) > 3 else ''})")
    except BaseException:
        lock.release()
        raise
    return lock


def check_resume(out: str | os.PathLike[str], cfg: dict, classes: list[str]) -> bool:
    """Checks that ``out``'s checkpoint can be resumed with ``cfg`` before anything is written.

    The logs must be readable (a torn last line is dropped later, with a warning); the checkpoint
    must be readable and come from the same task, model section and classes (the ``train:``
    section may differ, e.g. a longer schedule).

    Returns:
        True when there is a checkpoint to resume from, False when the run starts from scratch.

    Raises:
        InputError: naming the checkpoint and the first differing config key.
    """
    from visiontasks.engine.checkpoint import load_checkpoint
    from visiontasks.engine.log_files import check_logs

    check_logs(out)
    path = Path(out) / "checkpoint_last.pt"
    if not path.exists():
        return False
    state = load_checkpoint(path, mmap=True)
    hint = "--resume needs the run's own model (use another --out, or --overwrite to start over)"
    old = state.get("config")
    if isinstance(old, dict):
        old = upgrade_renamed(old)  # a run saved before model keys were renamed
        if old.get("task") != cfg["task"]:
            raise InputError(path, f"is a {old.get('task')} run but the config's task is {cfg['task']!r}; {hint}")
        old_model, new_model = old.get("model") or {}, cfg["model"]
        for key in sorted(set(old_model) | set(new_model), key=lambda k: (k != "name", k)):
            if key == "pretrained_backbone":
                continue  # only decides the initialisation; the checkpoint's weights replace it
            if old_model.get(key) != new_model.get(key):
                raise InputError(path, f"was trained with model.{key}={old_model.get(key)!r}, the config says "
                                       f"{new_model.get(key)!r}; {hint}")
    old_classes = (state.get("meta") or {}).get("classes")
    if old_classes is not None and list(old_classes) != list(classes):
        raise InputError(path, f"was trained on classes {list(old_classes)}, the data has {list(classes)}; {hint}")
    return True
