"""The layers of docs/ARCHITECTURE.md hold: data knows no model, the engine names none.

(a) Importing ``visiontasks.data`` and every one of its modules, in a fresh interpreter, loads no
module of ``visiontasks.detection`` or ``visiontasks.segmentation``; and no import statement in its
code, at the top or inside a function (which importing alone would not run), names them.
(b) The code of ``visiontasks/engine/`` (imports, names, string literals; docstrings and comments
may cite the papers) names no model, no model's run-directory folder and no model-specific
backbone flag, and imports nothing from the model packages.
Each check has a twin that feeds it a crossing layer, so the check itself is shown to fail.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

MODEL_PACKAGES = ("visiontasks.detection", "visiontasks.segmentation")
#: Substrings no identifier or string literal of the engine may hold (lower case).
MODEL_WORDS = ("rcnn", "r-cnn", "spp", "yolo", "svm", "bbox_reg", "takes_image_list", "darknet", "fcn", "deconvnet",
               "dilated", "selective_search")
#: Model-specific run-directory folders: no string literal of the engine may be one of them.
MODEL_FOLDERS = ("features", "svm", "bbox_reg")

_LOADED = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import {package} as package
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
    print(json.dumps(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))
""")


def _models_loaded_by(package: str, preload: str = "") -> list[str]:
    """Model modules in ``sys.modules`` after importing ``package`` and all its submodules (fresh process)."""
    code = preload + "\n" + _LOADED.format(package=package, forbidden=MODEL_PACKAGES)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_data_loads_no_model_module():
    assert _models_loaded_by("visiontasks.data") == []


def test_the_data_check_sees_a_crossing():
    # a data module that pulled in a detector would show up: simulate one by importing it first
    assert "visiontasks.detection.base" in _models_loaded_by("visiontasks.data", "import visiontasks.detection.base")


def model_imports_in(source: str) -> list[str]:
    """Import statements (anywhere, function bodies included) and string literals naming a model package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            modules = [node.value] if node.value.startswith(MODEL_PACKAGES) else []
        found += [f"line {node.lineno}: {m}" for m in modules if m.startswith(MODEL_PACKAGES)]
    return found


def test_no_data_module_imports_a_model_package():
    files = sorted((REPO / "visiontasks" / "data").rglob("*.py"))
    assert files
    found = [f"{p.relative_to(REPO)} {hit}" for p in files for hit in model_imports_in(p.read_text(encoding="utf-8"))]
    assert found == []
    # the check sees a lazy import, the form the old crossings took
    assert model_imports_in("def f():\n    from visiontasks.detection.yolo.augment import RandomHSV\n") != []


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def model_names_in(source: str) -> list[str]:
    """What in ``source`` names a model: imports of the model packages, identifiers or attribute
    names holding a model word, string literals (docstrings excepted) holding one or equal to a
    model's folder name. Returns ``["line N: ..."]`` findings."""
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        found += [f"line {line}: imports {m}" for m in modules if m.startswith(MODEL_PACKAGES)]
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname or node.name]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        found += [f"line {line}: name {n!r}" for n in names if any(w in n.lower() for w in MODEL_WORDS)]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.lower()
            if any(w in text for w in MODEL_WORDS) or text in MODEL_FOLDERS or text.startswith(MODEL_PACKAGES):
                found.append(f"line {line}: string {node.value!r}")
    return found


def test_the_engine_names_no_model():
    files = sorted((REPO / "visiontasks" / "engine").rglob("*.py"))
    assert files
    found = [f"{p.relative_to(REPO)} {hit}" for p in files for hit in model_names_in(p.read_text(encoding="utf-8"))]
    assert found == []


@pytest.mark.parametrize("source", [
    "from visiontasks.detection.rcnn.stages import SVMStage\n",
    "import visiontasks.segmentation\n",
    "RUN_FOLDERS = ('tb', 'features', 'svm')\n",
    "def f(model):\n    return getattr(model.backbone, 'takes_image_list', False)\n",
    "def f(stage):\n    return isinstance(stage, YOLOStage)\n",
    "import importlib\nimportlib.import_module('visiontasks.detection.yolo')\n",
])
def test_the_engine_check_sees_a_crossing(source):
    assert model_names_in(source) != []


def test_the_engine_check_lets_citations_and_generic_code_pass():
    source = '"""Caffe\'s bias convention, as R-CNN and FCN used (py-faster-rcnn)."""\n' \
             "def f(stages):\n    # SPP-net's pyramid: a comment may cite it\n" \
             "    return [s for s in stages if getattr(s, 'folders', ())]\n"
    assert model_names_in(source) == []
