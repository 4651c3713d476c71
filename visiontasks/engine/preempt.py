"""Stopping cleanly on SIGTERM / SIGINT: preemption (SLURM, Kubernetes, spot machines) and Ctrl-C.

A scheduler that preempts a job sends SIGTERM and, after a grace period (SLURM's ``KillWait``,
Kubernetes' ``terminationGracePeriodSeconds``: 30 s by default), SIGKILL; a person presses Ctrl-C
(SIGINT). While :func:`handling_signals` is active (``run_training`` holds it around the training
stages), the first such signal only sets a flag and prints one acknowledgement line; the loops of
training poll the flag at their step boundaries and stop there:

- the :class:`~visiontasks.engine.trainer.Trainer` after the current SGD step (collectively under
  DDP: :func:`stop_agreed` all-reduces the flag, so every rank stops at the same iteration), writing
  ``checkpoint_last.pt`` atomically;
- a stage's per-item loop (an image's features, a class's fit) through :func:`polled` /
  :func:`check`, after the item in hand (whose result is written atomically, or abandoned and
  redone on resume);
- :func:`~visiontasks.engine.stages.run_stages` before each stage.

The stopping point raises :class:`Preempted`; the tools turn it into one line,
``interrupted: <what was kept>; rerun with --resume to continue``, and the exit code
``128 + signal number`` (:data:`EXIT_CODES`: 130 for SIGINT, 143 for SIGTERM) — what a shell
reports for a process that the signal ended, which is what SLURM/Kubernetes wrappers test for.

A second signal, arriving :data:`DUPLICATE_WINDOW` seconds or more after the first, exits at once
(``os._exit`` with the same code): every file the run writes is written to a temporary file and
renamed, so what is on disk is the previous complete file; the lock and any temporary file left
behind are cleaned on the next start, as after ``kill -9``. Copies of the first signal arriving
within the window are the same request: launchers forward the signal the terminal or ``scancel``
already delivered to every process (``torchrun`` sends its workers the signal it got).

The handlers act only in the process that installed them: a forked DataLoader worker inherits
them and ignores the signal (it keeps serving batches until the trainer lets it go).

Shape shorthand: none (control flow only).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import torch

__all__ = ["Preempted", "EXIT_CODES", "DUPLICATE_WINDOW", "handling_signals", "stop_requested", "stop_agreed",
           "check", "polled", "request", "clear"]

T = TypeVar("T")

#: The signals handled and the exit code of each (128 + the signal number, as a shell reports it).
EXIT_CODES: dict[int, int] = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}
#: Seconds after the first signal during which further signals count as copies of it.
DUPLICATE_WINDOW = 1.0

_state: dict = {"signum": None, "time": 0.0, "pid": None}


class Preempted(BaseException):
    """Training stopped at a step boundary after SIGTERM/SIGINT; its state is on disk.

    A ``BaseException`` (as ``KeyboardInterrupt``), so that ``except Exception`` blocks in the
    stages let it through.

    Attributes:
        signum: the signal received.
        exit_code: the process's exit code (:data:`EXIT_CODES`).
        kept: what is on disk, e.g. ``"checkpoint_last.pt at iteration 37"`` (the message).
    """

    def __init__(self, signum: int, kept: str) -> None:
        self.signum, self.kept = int(signum), kept
        self.exit_code = EXIT_CODES.get(self.signum, 128 + self.signum)
        super().__init__(f"{signal.Signals(self.signum).name}: {kept}")


def _handler(signum: int, frame) -> None:
    if os.getpid() != _state["pid"]:  # a forked child (DataLoader worker): the parent decides
        return
    now = time.monotonic()
    if _state["signum"] is None:
        _state["signum"], _state["time"] = signum, now
        _say(f"received {signal.Signals(signum).name}: stopping at the next step boundary and writing a checkpoint "
             f"(a second signal exits at once)")
    elif now - _state["time"] >= DUPLICATE_WINDOW:
        _say(f"received {signal.Signals(signum).name} again: exiting at once (the last complete checkpoint is kept)")
        os._exit(EXIT_CODES.get(signum, 128 + signum))


def _say(line: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
        return
    try:  # os.write: no buffered stream may be re-entered from a signal handler
        os.write(2, (line + "\n").encode())
    except OSError:
        pass


@contextmanager
def handling_signals() -> Iterator[None]:
    """Installs the SIGINT/SIGTERM handlers for the block, restoring the previous ones after it.

    Outside the main thread (where Python cannot install handlers) it does nothing. The flag is
    cleared on entry and exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    clear()
    _state["pid"] = os.getpid()
    try:
        for s in EXIT_CODES:
            signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state["pid"] = None
        clear()


def stop_requested() -> int | None:
    """The signal received in this process, or None."""
    return _state["signum"]


def request(signum: int = signal.SIGTERM) -> None:
    """Sets the flag as the first signal would (for tests and embedding code)."""
    if _state["signum"] is None:
        _state["signum"], _state["time"] = int(signum), time.monotonic()


def clear() -> None:
    """Forgets a received signal."""
    _state["signum"], _state["time"] = None, 0.0


def stop_agreed() -> int | None:
    """Whether any rank received a signal (a collective call under DDP: every rank must call it).

    One all-reduce (MAX) of a one-element int tensor; without a process group, :func:`stop_requested`.

    Returns:
        The signal to stop for (the largest number among the ranks' signals), or None on every rank.
    """
    import torch.distributed as dist

    mine = _state["signum"] or 0
    if not (dist.is_available() and dist.is_initialized()):
        return mine or None
    flag = torch.tensor([mine], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    agreed = int(flag.item())
    return agreed or None


def check(kept: str | Callable[[], str]) -> None:
    """Raises :class:`Preempted` when a signal was received in this process (a local check).

    Args:
        kept: what is on disk at this point (or a callable giving it), for the message.
    """
    signum = _state["signum"]
    if signum is not None:
        raise Preempted(signum, kept() if callable(kept) else kept)


def polled(items: Iterable[T], kept: str | Callable[[], str]) -> Iterator[T]:
    """Yields ``items``, calling :func:`check` before each one (a loop that stops between items).

    Args:
        items: the loop's items.
        kept: as :func:`check`.
    """
    for item in items:
        check(kept)
        yield item
