"""Shared command-line plumbing of the tools: bad input → one line on stderr, exit 2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from visiontasks.errors import InputError  # noqa: E402


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Runs ``main``; an ``InputError``/``ValueError``/missing file becomes ``error: <message>`` and exit 2."""
    try:
        return main(argv)
    except (InputError, ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; rerun with --resume to continue", file=sys.stderr)
        return 130
