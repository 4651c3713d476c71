"""Memory available to this process, and the one-line refusal of an input too large to score in it (issue 26).

Scoring a results file of millions of detections must not swap the machine to death or wake the
kernel's OOM killer (which may kill another process than this one): the readers estimate what they
need from the input's size before reading it and, when that is more than the memory available,
stop with one :class:`~visiontasks.errors.InputError` line naming the file and the GiB needed.

Available memory is the least of the kernel's ``MemAvailable`` (``/proc/meminfo``: free memory plus
what the page cache can give back without swapping) and, inside a container, the cgroup's limit
less its usage (cgroup v2 ``memory.max`` / ``memory.current``, v1 ``memory.limit_in_bytes`` /
``memory.usage_in_bytes``). Where none of these can be read (not Linux) nothing is refused.
"""
from __future__ import annotations

import os
from pathlib import Path

from visiontasks.errors import InputError

__all__ = ["available_memory", "check_memory", "GIB"]

GIB = 2 ** 30
#: Needs below this are never refused: they are within what the process's own baseline varies by, and a
#: machine so short of memory that they do not fit fails anyway (a small input is not what to refuse).
MIN_CHECKED = 256 * 2 ** 20
_CGROUPS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def available_memory() -> tuple[int, str] | None:
    """``(bytes, where the figure comes from)`` of memory this process can still take, or None if unknown."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "MemAvailable"))
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in _CGROUPS:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:  # v1's "no limit" is a huge number
            found.append((max(limit - usage, 0), f"the cgroup limit {limit / GIB:.1f} GiB less its usage"))
            break
    return min(found) if found else None


def check_memory(need: int, path: str | os.PathLike[str], what: str) -> None:
    """Raises one ``InputError`` line when ``need`` bytes are more than :func:`available_memory`.

    Needs under :data:`MIN_CHECKED` always pass.

    Args:
        need: the estimated bytes (beyond what the process holds already).
        path: the file (or folder) to name in the error.
        what: what needs it, e.g. ``"scoring 10,000,000 detections (500,000 in the largest class file)"``.

    Raises:
        InputError: ``PATH: <what> needs about X.X GiB of memory; Y.Y GiB is available (MemAvailable) …``.
    """
    if need < MIN_CHECKED:
        return
    available = available_memory()
    if available is None or need <= available[0]:
        return
    raise InputError(path, f"{what} needs about {_size(need)} of memory; {_size(available[0])} is available "
                           f"({available[1]}): score it on a machine with more memory, or split the results")


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.0f} MiB"
