"""The per-detection reference (py-faster-rcnn's ``voc_eval`` loop) for the benchmark.

It lives once, in tests/test_eval_voc_reference.py, where the test suite checks the product against it;
this module only loads it from there (the reference is not product code).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "tests" / "test_eval_voc_reference.py"
_spec = importlib.util.spec_from_file_location("_voc_eval_reference", _PATH)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

voc_eval_reference = _module.voc_eval_reference

__all__ = ["voc_eval_reference"]
