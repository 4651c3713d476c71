"""The ``visiontasks`` command: one entry point for the tools in ``tools/``.

    visiontasks predict photo.jpg                 # = python tools/predict.py photo.jpg
    visiontasks train-det --config my.yaml        # = python tools/train_det.py --config my.yaml
    visiontasks summary fcn8s --input 3x500x500
    python -m visiontasks export --run runs/detection/default --out model.onnx

It runs the very same files as ``python tools/<name>.py``: from a checkout the top-level
``tools/`` folder, from an installed wheel the copy the build put in ``visiontasks/tools/``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["COMMANDS", "tools_dir", "load_tool", "main"]

#: command → file in tools/ (without .py)
COMMANDS = {"train-det": "train_det", "train-seg": "train_seg", "eval": "eval", "predict": "predict",
            "propose": "propose", "export": "export", "summary": "summary", "compress": "compress",
            "check-data": "check_data", "benchmark": "benchmark"}


def tools_dir() -> Path:
    """The folder holding the tools: the wheel's ``visiontasks/tools`` or the checkout's ``tools/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tools", here.parent / "tools"):
        if (candidate / "_common.py").is_file():
            return candidate
    raise FileNotFoundError(f"the visiontasks tools are missing: neither {here / 'tools'} nor {here.parent / 'tools'} "
                            "holds _common.py")


def load_tool(name: str) -> ModuleType:
    """Imports ``tools/<name>.py`` as a module (its ``from _common import ...`` resolved in its folder).

    The folder is on ``sys.path`` only while the tool's module-level imports run; any path the
    tool's plumbing adds for running from a checkout is taken out again when installed.
    """
    folder = tools_dir()
    saved = list(sys.path)
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"visiontasks_tool_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def _usage() -> str:
    names = " | ".join(COMMANDS)
    return (f"usage: visiontasks {{{names}}} [options]\n"
            "       visiontasks COMMAND --help   (the options of one command)")


def main(argv: list[str] | None = None) -> int:
    """Runs ``visiontasks COMMAND [options]``; returns the tool's exit code (2: unknown command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    tool = load_tool(COMMANDS[command])
    run_cli = sys.modules["_common"].run_cli
    prog = sys.argv[0]
    sys.argv[0] = f"visiontasks {command}"  # argparse's usage line names the command
    try:
        return run_cli(tool.main, rest)
    finally:
        sys.argv[0] = prog


if __name__ == "__main__":
    sys.exit(main())
