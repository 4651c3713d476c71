"""visiontasks: the classic CNN detection and segmentation lineage behind one API.

Box format everywhere: ``xyxy`` float pixels, 0-based (VOC's 1-based files are converted on read).

    import visiontasks
    model = visiontasks.load_model("default")
    result = model.predict("photo.jpg")

The names below are imported on first use (PEP 562), so that torch-free parts (the evaluators
scoring results files, ``visiontasks.errors``) load without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "visiontasks.api": ("PRESETS", "Predictor", "load_model"),
    "visiontasks.errors": ("InputError",),
    "visiontasks.registry": ("get_model", "list_models", "register_model"),
    "visiontasks.results": ("DetectionResult", "SegmentationResult"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "InputError", "get_model", "list_models", "register_model", "load_model", "Predictor", "PRESETS",
    "DetectionResult", "SegmentationResult", "__version__",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'visiontasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
