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

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
