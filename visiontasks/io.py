"""Atomic file writing: finished work is never lost to a crash half-way through a write.

Every result file of the toolkit (checkpoints, JSON, YAML, CSV logs, PNGs, VOC results files)
goes through :func:`atomic_write`: the data is written to a temporary file in the destination's
folder and renamed over the destination (``os.replace``, atomic on POSIX and Windows), so the
path holds either the previous complete file or the new complete one, never a partial file.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", fsync: bool = False,
                 **open_kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file beside ``path``; on a clean exit renames it to ``path``.

    Args:
        path: destination (its folder is created if needed).
        mode: "wb" or "w" (text; pass ``encoding``/``newline`` in ``open_kwargs``).
        fsync: flush the data (and the folder entry) to disk before returning — for checkpoints.

    Yields:
        The open temporary file. On an exception it is deleted and ``path`` is left untouched.

    Raises:
        OSError: a write failed for lack of space or another OS reason; its ``filename`` is
            ``path`` (so the tools print "no space left on device: PATH").
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error_in(exc)
        if cause is not None:  # e.g. a full disk: say which file could not be written
            raise OSError(cause.errno, cause.strerror, str(path)) from exc
        raise
    if fsync:
        _fsync_dir(path.parent)


def _os_error_in(exc: BaseException) -> OSError | None:
    """The path-less OS error behind ``exc`` (itself, or its cause/context: torch.save wraps a full
    disk's ``OSError`` in a ``RuntimeError``), or None."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc if exc.filename is None else None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (e.g. Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
