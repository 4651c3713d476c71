"""The log files of a run directory on resume: read, check and cut ``log.csv`` and ``eval_log.jsonl``.

A killed run can leave rows written after its last checkpoint and a torn last line (an append cut
short). :func:`check_logs` reads both files without changing them (before a resume is known to be
valid); :func:`truncate_csv` and :func:`truncate_jsonl` then drop what lies past the checkpoint's
iteration, a torn last line with a warning. A malformed line before the last is an
:class:`~visiontasks.errors.InputError` naming the file and line.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterable

from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["check_logs", "truncate_csv", "truncate_jsonl"]


def _rewrite_rows(path: Path, keep: Iterable[str]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("".join(keep))


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], int | None]:
    """``(header, [(iteration, row)], line of a torn last row or None)`` of ``log.csv``.

    A torn last row (a killed append: too few fields or no number) is reported, not returned;
    a malformed row before it is an error naming the file and line.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"training log is not readable CSV ({exc}); delete it to start a new log") from None
    if not rows:
        return [], [], None
    header, body, torn = rows[0], [], None
    for line, row in enumerate(rows[1:], 2):
        if not row:
            continue
        try:
            iteration = int(row[0])
            if len(row) != len(header):
                raise ValueError
        except ValueError:
            if line == len(rows):
                torn = line
                continue
            raise InputError(path, f"line {line} is not a log row ({','.join(row)[:60]!r}); delete it") from None
        body.append((iteration, row))
    return header, body, torn


def _read_jsonl(path: Path) -> tuple[list[tuple[int, str]], int | None]:
    """``([(iteration, line)], line number of a torn last line or None)`` of ``eval_log.jsonl``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise InputError(path, "evaluation log is not UTF-8 text; delete it to start a new log") from None
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip()]
    records, torn = [], None
    for k, (n, ln) in enumerate(numbered):
        try:
            iteration = int(json.loads(ln)["iteration"])
        except (ValueError, KeyError, TypeError):
            if k == len(numbered) - 1:
                torn = n
                continue
            raise InputError(path, f"line {n} is not an evaluation record ({ln.strip()[:60]!r}); delete it") from None
        records.append((iteration, ln if ln.endswith("\n") else ln + "\n"))
    return records, torn


def check_logs(out_dir: str | os.PathLike[str]) -> None:
    """Reads a run's ``log.csv`` and ``eval_log.jsonl`` without changing them (before a resume).

    Raises:
        InputError: a log is unreadable or has a malformed line before its last (named).
    """
    out_dir = Path(out_dir)
    if (out_dir / "log.csv").is_file():
        _read_csv(out_dir / "log.csv")
    if (out_dir / "eval_log.jsonl").is_file():
        _read_jsonl(out_dir / "eval_log.jsonl")


def truncate_csv(path: Path, last_iteration: int) -> list[str]:
    """Drops rows with ``iteration > last_iteration`` (and a torn last row, with a warning); returns the header."""
    if not path.is_file():
        return []
    header, body, torn = _read_csv(path)
    if not header:
        return []
    if torn is not None:
        _warn(f"{path}: dropped a torn last row (line {torn}) left by an interrupted run")
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *(row for it, row in body if it <= last_iteration)])
    return header


def truncate_jsonl(path: Path, last_iteration: int) -> None:
    """Drops evaluations past ``last_iteration``; a torn last line is dropped with a warning."""
    if not path.is_file():
        return
    records, torn = _read_jsonl(path)
    if torn is not None:
        _warn(f"{path}: dropped a torn last line (line {torn}) left by an interrupted run")
    _rewrite_rows(path, [ln for it, ln in records if it <= last_iteration])
