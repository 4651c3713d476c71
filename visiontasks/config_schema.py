"""What a config may hold: the sections' defaults, the type of each key, the checks.

:data:`DEFAULTS` lists every key of ``data``, ``train`` and ``eval`` with its default (``model``
holds the builder's keyword arguments, checked against its signature). :func:`validate` names the
first unknown key or wrongly typed value; :func:`upgrade_renamed` moves model keys a builder has
renamed, for configs saved before the rename. Reading, merging and overriding are
:mod:`visiontasks.config`.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

from visiontasks.errors import InputError
from visiontasks.tasks import TASKS, check_metric

__all__ = ["DEFAULTS", "NONE_DEFAULT_TYPES", "check_type", "validate", "upgrade_renamed"]

DEFAULTS: dict[str, Any] = {
    "task": "detection",
    "model": {"name": None},
    "data": {
        "dataset": "embedded",
        "root": None,
        "voc_root": None,  # dataset sbd: the VOC folder of its seg11valid / train_aug splits
        "extra_train_roots": [],
        "train_split": "trainval",
        "test_split": "test",
        "classes": None,
        "hflip_prob": 0.5,
        "vflip_prob": 0.0,  # segmentation only
        "photometric": False,
        "jitter": 0.0,
        "saturation": 1.0,
        "exposure": 1.0,
        "min_size": None,
        "max_size": None,
        "crop_size": None,
        "scale_range": None,  # segmentation only: [low, high] random rescale before the crop
        "num_workers": 2,
        "check": True,
        "images": None,
        "annotations": None,
        "test_images": None,
        "test_annotations": None,
        "proposals": None,
        "test_proposals": None,
    },
    "train": {
        "max_iters": 1000,
        "batch_size": 2,
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "optimizer": "sgd",  # sgd | nesterov | adagrad | rmsprop | adam | adamw (engine/optim.py)
        "schedule": "step",
        "steps": [],
        "gamma": 0.1,
        "warmup_iters": 0,
        "warmup_factor": 0.001,
        "amp": None,  # null/true = auto (fp16 on CUDA, bf16 on a native-bf16 CPU, else fp32) | none | fp16 | bf16
        "bias_lr_factor": None,
        "bias_weight_decay": None,
        "clip_grad_norm": None,
        "accumulate": 1,
        "eval_every": 0,
        "checkpoint_every": 1000,
        "log_every": 20,
        "seed": 0,
    },
    "eval": {"metric": None},
}



#: Types of the keys whose default is None (the others take the type of their default).
NONE_DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "data.root": (str,), "data.classes": (list,), "data.min_size": (int,), "data.max_size": (int,),
    "data.voc_root": (str,),
    "data.crop_size": (int, list), "data.scale_range": (list,), "data.images": (str,), "data.annotations": (str,),
    "data.test_images": (str,), "data.test_annotations": (str,), "data.proposals": (str,),
    "data.test_proposals": (str,), "train.bias_lr_factor": (float,), "train.bias_weight_decay": (float,),
    "train.clip_grad_norm": (float,), "train.amp": (str, bool), "eval.metric": (str,),
}
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def check_type(key: str, value: Any, source: str = "<config>", default: Any = None,
               types: tuple[type, ...] | None = None) -> Any:
    """Checks ``value`` against the type of ``key``'s default; returns it (a numeric string as float).

    YAML reads ``1e-3`` (no dot) as a string: a string that parses as a finite number is taken
    as that number where a number is expected.

    Args:
        key: ``section.name``; for ``data``/``train``/``eval`` the default comes from :data:`DEFAULTS`.
        value: the configured value.
        source: the config file (named in the error).
        default, types: for other keys (``model.*``): the builder's default, and the accepted types
            (default: the default's type).

    Raises:
        InputError: naming ``source``, the key and the value, e.g. ``train.lr must be a number, got 'fast'``.
    """
    section, _, name = key.partition(".")
    if section in ("data", "train", "eval"):
        default = DEFAULTS[section][name]
        types = NONE_DEFAULT_TYPES.get(key)
    if default is not None:
        types = (type(default),) if not isinstance(default, tuple) else (list, tuple)
        if section == "model" and type(default) is int:
            types = (int, float)  # a builder's int default may stand for any number
    if types is None or (value is None and default is None):
        return value
    if float in types and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and number == number and abs(number) != float("inf"):
            return number
    ok = any(isinstance(value, t) and not (isinstance(value, bool) and t is not bool)
             or (t is float and isinstance(value, int) and not isinstance(value, bool)) for t in types)
    if not ok:
        names = ["a number" if t is int and float in types else _TYPE_NAMES.get(t, t.__name__) for t in types]
        want = " or ".join(dict.fromkeys(names)) + (" or null" if default is None else "")
        raise InputError(source, f"{key} must be {want}, got {value!r}")
    return value


def validate(cfg: dict, source: str = "<config>") -> dict:
    """Checks section and key names against :data:`DEFAULTS` and the model builder's signature.

    Raises:
        InputError: naming ``source`` and the first unknown key.
    """
    for key in cfg:
        if key not in DEFAULTS:
            raise InputError(source, f"unknown config key {key!r} (known: {sorted(DEFAULTS)})")
    for section in ("model", "data", "train", "eval"):
        if not isinstance(cfg.get(section, {}), dict):
            raise InputError(source, f"config section {section!r} must be a mapping of keys, got "
                                     f"{cfg[section]!r}")
    for section in ("data", "train", "eval"):
        for key in cfg.get(section, {}):
            if key not in DEFAULTS[section]:
                raise InputError(source, f"unknown config key '{section}.{key}' (known: {sorted(DEFAULTS[section])})")
            cfg[section][key] = check_type(f"{section}.{key}", cfg[section][key], source)
    task = cfg.get("task")
    if task not in TASKS:
        raise InputError(source, f"task must be one of {TASKS}, got {task!r}")
    try:
        check_metric(task, cfg.get("eval", {}).get("metric"))
    except ValueError as exc:
        raise InputError(source, str(exc)) from None
    name = cfg.get("model", {}).get("name")
    if not name:
        raise InputError(source, "model.name is missing")
    if not isinstance(name, str):  # a list or mapping cannot name a model (tests/test_fuzz_config.py)
        raise InputError(source, f"model.name must be a string, got {name!r}")
    from visiontasks.registry import get_model_builder, model_task

    try:
        builder = get_model_builder(name)
    except ValueError as exc:
        raise InputError(source, str(exc)) from None
    if model_task(name) != task:
        raise InputError(source, f"model.name {name!r} is a {model_task(name)} model but the config's task is "
                                 f"{task!r}")
    params = inspect.signature(builder).parameters
    renamed = getattr(builder, "renamed_keys", {})
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in cfg["model"]:
            if key != "name" and key not in params:
                if key in renamed:
                    raise InputError(source, f"config key 'model.{key}' is now 'model.{renamed[key]}'")
                raise InputError(source, f"unknown config key 'model.{key}': {name} takes {sorted(params)}")
    for key, value in cfg["model"].items():
        default = params[key].default if key in params else None
        if key != "name" and isinstance(default, (bool, int, float, str, tuple)) and value is not None:
            cfg["model"][key] = check_type(f"model.{key}", value, source, default=default)
        elif dataclasses.is_dataclass(default) and value is not None:
            cfg["model"][key] = _check_group(f"model.{key}", value, default, source)
    return cfg


def _check_group(key: str, value: Any, default: Any, source: str) -> dict:
    """Checks a group of settings (a builder argument whose default is a dataclass, e.g.
    ``model.roi``): a mapping whose keys are the dataclass's fields, each of its field's type."""
    fields = [f.name for f in dataclasses.fields(default)]
    if not isinstance(value, dict):
        raise InputError(source, f"{key} must be a mapping of settings ({', '.join(fields)}), got {value!r}")
    out = {}
    for sub, item in value.items():
        if sub not in fields:
            raise InputError(source, f"unknown config key '{key}.{sub}': {key.partition('.')[2]} takes {fields}")
        out[sub] = check_type(f"{key}.{sub}", item, source, default=getattr(default, sub))
    return out


def upgrade_renamed(cfg: dict) -> dict:
    """Moves the model keys that a builder has renamed to their new place, for configs written
    before the rename (checkpoints, run folders). The builder lists them in its ``renamed_keys``
    (old name → ``group.field``, e.g. ``roi_positive_fraction`` → ``roi.positive_fraction``); a
    value already at the new place wins. Anything else is left for :func:`validate`.

    Args:
        cfg: a config dict (not modified).

    Returns:
        A copy with the renamed keys moved.
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return cfg
    from visiontasks.registry import get_model_builder

    try:
        renamed = getattr(get_model_builder(model["name"]), "renamed_keys", {})
    except ValueError:
        return cfg
    for old in [k for k in model if k in renamed]:
        value = model.pop(old)
        *parents, last = renamed[old].split(".")
        node = model
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node.setdefault(last, value)
    return cfg
