"""Configs: one _base_ level, dotted overrides, unknown keys named in the error."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from visiontasks.config import apply_overrides, load_config
from visiontasks.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_and_overrides(tmp_path):
    _write(tmp_path / "base.yaml", {"model": {"name": "faster_rcnn", "backbone": "vgg16"},
                                    "train": {"lr": 0.01, "steps": [10]}})
    cfg_path = _write(tmp_path / "child.yaml", {"_base_": "base.yaml", "model": {"backbone": "small"}})
    cfg = load_config(cfg_path, ["train.lr=0.5", "train.steps=[1,2]", "model.min_size=128"])
    assert cfg["model"] == {"name": "faster_rcnn", "backbone": "small", "min_size": 128}
    assert cfg["train"]["lr"] == 0.5 and cfg["train"]["steps"] == [1, 2]
    assert cfg["train"]["momentum"] == 0.9  # from the defaults


def test_unknown_override_key_is_named(tmp_path):
    cfg_path = _write(tmp_path / "c.yaml", {"model": {"name": "faster_rcnn"}})
    with pytest.raises(InputError, match="train.lrr"):
        load_config(cfg_path, ["train.lrr=0.1"])
    with pytest.raises(InputError, match="model.not_an_arg"):
        load_config(cfg_path, ["model.not_an_arg=1"])


def test_unknown_file_key_is_named(tmp_path):
    cfg_path = _write(tmp_path / "c.yaml", {"model": {"name": "faster_rcnn"}, "data": {"rooot": "x"}})
    with pytest.raises(InputError, match=r"c\.yaml.*data\.rooot"):
        load_config(cfg_path)


def test_base_of_base_rejected(tmp_path):
    _write(tmp_path / "a.yaml", {"model": {"name": "faster_rcnn"}})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    cfg_path = _write(tmp_path / "c.yaml", {"_base_": "b.yaml"})
    with pytest.raises(InputError, match="one level"):
        load_config(cfg_path)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(InputError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(InputError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_override_syntax():
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_overrides({"train": {}}, ["train.lr"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg["model"]["name"]
