"""One flat model registry, in the spirit of torchvision's ``models/_api.py``.

Backbones, detectors and segmenters share one namespace; each entry carries a ``task``
tag ("backbone", "detection", "segmentation") so that tools can list what they can build.

Example::

    @register_model("faster_rcnn", task="detection")
    def faster_rcnn(num_classes: int = 21, backbone: str = "vgg16", **kwargs) -> nn.Module:
        ...

    model = get_model("faster_rcnn", num_classes=4, backbone="small")
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch.nn as nn

from visiontasks.tasks import TASKS

__all__ = ["register_model", "get_model", "list_models", "get_model_builder", "model_task"]

_F = TypeVar("_F", bound=Callable[..., nn.Module])
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_TASKS: dict[str, str] = {}
_VALID_TASKS = ("backbone", "classification", *TASKS)


def register_model(name: str | None = None, task: str = "detection") -> Callable[[_F], _F]:
    """Decorator that registers a model builder under ``name`` (default: the function name).

    Args:
        name: registry key; must be unique across all tasks.
        task: one of "backbone", "classification", "detection", "segmentation".

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in _VALID_TASKS:
        raise ValueError(f"task must be one of {_VALID_TASKS}, got {task!r}")

    def wrapper(fn: _F) -> _F:
        key = name or fn.__name__
        if key in _BUILDERS and _BUILDERS[key] is not fn:
            raise ValueError(f"a model is already registered under the name {key!r}")
        _BUILDERS[key] = fn
        _TASKS[key] = task
        return fn

    return wrapper


def _ensure_loaded() -> None:
    # Importing the sub-packages runs their @register_model decorators.
    import visiontasks.backbones  # noqa: F401
    import visiontasks.detection  # noqa: F401
    import visiontasks.segmentation  # noqa: F401


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """Returns the builder registered under ``name``.

    Raises:
        ValueError: if no model has that name (the message lists the known names).
    """
    _ensure_loaded()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(_BUILDERS)}")
    return _BUILDERS[name]


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds the model registered under ``name`` with the builder's keyword arguments."""
    return get_model_builder(name)(**kwargs)


def model_task(name: str) -> str:
    """Returns the task tag ("backbone", "detection" or "segmentation") of a registered model."""
    get_model_builder(name)
    return _TASKS[name]


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally only those of one task."""
    _ensure_loaded()
    return sorted(k for k, t in _TASKS.items() if task is None or t == task)
