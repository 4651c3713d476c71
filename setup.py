"""Build step of the wheel (metadata lives in pyproject.toml).

The repository keeps its resources at the top level — ``weights/`` (the default detector and segmenter),
``configs/`` and the command-line ``tools/`` — and they stay the source of truth. A wheel copies
them into the package: ``visiontasks/_weights/``, ``visiontasks/configs/`` and
``visiontasks/tools/``, where ``visiontasks.load_model("default")`` and the ``visiontasks``
command (``visiontasks/cli.py``) find them. Editable installs read the checkout directly.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: top-level folder → (folder inside the package, file patterns copied)
SHIPPED = {"weights": ("_weights", ("*.pt", "README.md")), "configs": ("configs", ("**/*.yaml",)),
           "tools": ("tools", ("*.py",))}


class BuildWithResources(build_py):
    """``build_py`` that also copies the top-level resources into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout
        for source, (target, patterns) in SHIPPED.items():
            dest_root = Path(self.build_lib) / "visiontasks" / target
            for pattern in patterns:
                for path in sorted((ROOT / source).glob(pattern)):
                    dest = dest_root / path.relative_to(ROOT / source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)


setup(cmdclass={"build_py": BuildWithResources})
