"""Shared command-line plumbing of the tools: bad input → one line on stderr, exit 2.

``run_cli(main)`` turns the errors a user can cause into ``error: <message>`` on stderr and exit
code 2: ``InputError``/``ValueError`` (bad files, configs, options), a missing file, a non-finite
loss, and operating-system errors (permission denied, no space left, a file where a folder is
wanted, …) with the path they concern. ``--debug`` anywhere on the command line (or
``VISIONTASKS_DEBUG=1``) lets the traceback through instead. Ctrl-C exits 130 keeping the last
checkpoint; during training SIGINT/SIGTERM stop at a step boundary with a new checkpoint and exit
130/143 (``visiontasks.engine.preempt``). Progress bars are closed before the error line, so the
line is the last thing printed.
Command-line mistakes (an unknown option, a bad choice, a missing argument) are one line too,
``error: <tool>: <what argparse says> (see --help)``, not argparse's usage block.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from visiontasks.errors import InputError  # noqa: E402

__all__ = ["REPO", "run_cli", "os_error_line", "UsageError"]


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error, naming its path: ``no space left on device: PATH``."""
    path = exc.filename if exc.filename is not None else "<unknown path>"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    if exc.errno == errno.ENOSPC:
        return f"no space left on device: {path}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded: {path}"
    reason = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.EROFS: "read-only file system", errno.ENOTDIR: "a file is in the way where a folder is needed",
              errno.EISDIR: "is a folder, not a file", errno.EEXIST: "already exists (and is not a folder)",
              errno.ENAMETOOLONG: "name too long"}.get(exc.errno, exc.strerror or str(exc))
    return f"{path}: {reason}"


def _close_progress_bars() -> None:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class UsageError(ValueError):
    """A command-line mistake argparse found (reported by :func:`run_cli` as one line, exit 2)."""


def _usage_error(parser: argparse.ArgumentParser, message: str) -> None:
    raise UsageError(f"{parser.prog}: {message} (see --help)")


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """Every parser a tool builds (subcommands included) raises :class:`UsageError` instead of
    printing its usage block and exiting; ``--help`` still prints and exits 0."""
    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _usage_error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Runs ``main(argv)``; user errors become one ``error: <message>`` line on stderr and exit code 2.

    Args:
        main: the tool's ``main(argv) -> exit code``.
        argv: the arguments (default ``sys.argv[1:]``); ``--debug`` is taken out and re-raises errors.

    Returns:
        ``main``'s exit code, 2 for bad input, 130 on Ctrl-C, 143 when SIGTERM stopped training.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("VISIONTASKS_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        with _one_line_usage_errors():
            return main(args)
    except (InputError, ValueError, FileNotFoundError, FloatingPointError, OSError) as exc:
        if debug:
            raise
        _close_progress_bars()
        line = os_error_line(exc) if isinstance(exc, OSError) and not isinstance(exc, InputError) else str(exc)
        print(f"error: {' '.join(line.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted: the last checkpoint is kept; rerun with --resume to continue", file=sys.stderr)
        return 130
    except BaseException as exc:  # SIGTERM/SIGINT during training: stopped at a step boundary
        preempt = sys.modules.get("visiontasks.engine.preempt")  # not imported: it cannot be a Preempted
        if preempt is None or not isinstance(exc, preempt.Preempted):
            raise
        _close_progress_bars()
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
            print(f"interrupted: {exc}; rerun with --resume to continue", file=sys.stderr)
        return exc.exit_code
