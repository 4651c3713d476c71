"""Errors for bad input: one clear line naming the file and the problem."""
from __future__ import annotations

import os

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input (a file that is missing, malformed, hostile or inconsistent).

    ``str(err)`` is ``"<path>: <problem>"`` so that command-line tools can print it as is.

    Args:
        path: the offending file or folder.
        problem: what is wrong with it, in a short sentence.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str | None = None) -> None:
        if problem is None:  # re-raised from a DataLoader worker with the worker's whole traceback as text
            path, problem = _from_worker_message(str(path))
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problem))


def _from_worker_message(message: str) -> tuple[str, str]:
    """``(path, problem)`` out of the text torch's DataLoader re-raises a worker's exception with
    (``ExceptionWrapper.reraise`` calls the exception class with one string: "Caught InputError in
    DataLoader worker process 0. Original Traceback ... InputError: <path>: <problem>")."""
    lines = [line for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else message
    for prefix in ("visiontasks.errors.InputError: ", "InputError: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
            break
    path, sep, problem = last.partition(": ")
    return (path, problem) if sep else ("<data>", last)
