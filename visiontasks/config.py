"""YAML configs that mirror constructor arguments.

A config has four sections (``model``, ``data``, ``train``, ``eval``) plus ``task``. ``model`` holds
``name`` and the keyword arguments of ``visiontasks.get_model(name, ...)``; ``train`` holds the
keyword arguments of :class:`visiontasks.engine.Trainer`; ``data`` those of
:func:`visiontasks.data.build_dataset`. A file may name at most one ``_base_`` (a path relative to
itself) whose values it overrides; a base may not have a base of its own. Command-line overrides
are ``key.sub=value`` strings with YAML values (``train.lr=0.01``, ``data.classes=[a,b]``).
A builder argument whose default is a dataclass (a group of settings, e.g. ``roi`` of the
two-stage detectors) is a nested mapping: ``model: {roi: {positive_fraction: 0.5}}`` or
``model.roi.positive_fraction=0.5``. Unknown keys are an error that names the key (the defaults
and checks: :mod:`visiontasks.config_schema`).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from visiontasks.errors import InputError
from visiontasks.config_schema import DEFAULTS, upgrade_renamed, validate
from visiontasks.io import atomic_write

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "merge", "validate", "dump_config", "upgrade_renamed"]

def merge(base: dict, override: dict, path: str = "") -> dict:
    """Recursively merges ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "config file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a config file") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                               "save the config as UTF-8") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the config ({exc.strerror or exc})") from None
    except ValueError as exc:  # a path holding a NUL byte, e.g. `_base_: "\0"` (tests/test_fuzz_config.py)
        raise InputError(path, f"not a usable file name ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({exc})".replace("\n", " ")) from None
    except RecursionError:  # thousands of nested [ or { (tests/test_fuzz_config.py)
        raise InputError(path, "not a usable config: YAML nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(path, f"a config must be a mapping, found {type(data).__name__}")
    return data


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key.sub=value")
    key, _, raw = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"override {item!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ValueError(f"override {item[:40]!r}... nests its value too deeply") from None
    return parts, value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Applies ``key.sub=value`` overrides; a key that does not exist in ``cfg`` is an error.

    Keys of ``model`` may be new (they are checked against the builder's signature by
    :func:`validate`), every other key must already exist.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        parts, value = _parse_override(item)
        node = cfg
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if parts[0] == "model" and part not in node:
                    node[part] = {}
                else:
                    raise ValueError(f"unknown config key {'.'.join(parts[: i + 1])!r} in override {item!r}")
            node = node[part]
        last = parts[-1]
        if last not in node and parts[0] != "model":
            raise ValueError(f"unknown config key {'.'.join(parts)!r} in override {item!r}")
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            # `train={lr: 0.1}` sets that key; `train={}` keeps the section (was: emptied it, and
            # training failed later on a missing key — found by tests/test_fuzz_config.py)
            value = merge(node[last], value)
        node[last] = value
    return cfg


def load_config(path: str | Path, overrides: Iterable[str] = (), upgrade: bool = False) -> dict:
    """Loads a YAML config, its single ``_base_``, the defaults and the overrides; validates.

    Args:
        path: the YAML file.
        overrides: ``key.sub=value`` strings.
        upgrade: move renamed model keys to their new place first (:func:`upgrade_renamed`; for
            the config a run folder saved, not for a config a user writes).

    Returns:
        The resolved config dict (sections ``task``, ``model``, ``data``, ``train``, ``eval``).
    """
    path = Path(path)
    cfg = _read_yaml(path)
    base_name = cfg.pop("_base_", None)
    if base_name is not None:
        if not isinstance(base_name, str) or not base_name.strip() or "\0" in base_name:  # tests/test_fuzz_config.py
            raise InputError(path, f"_base_ must be the path of a config file, got {base_name!r}")
        base_path = (path.parent / base_name).resolve()
        base = _read_yaml(base_path)
        if "_base_" in base:
            raise InputError(base_path, "a base config may not have a _base_ of its own (one level only)")
        cfg = merge(base, cfg)
    if upgrade:
        cfg = upgrade_renamed(cfg)
    cfg = merge(DEFAULTS, cfg)
    validate(cfg, str(path))
    try:
        cfg = apply_overrides(cfg, overrides)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    return validate(cfg, str(path))


def dump_config(cfg: dict, path: str | Path) -> None:
    """Writes ``cfg`` as YAML atomically (temp file + rename)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(cfg, sort_keys=False))
