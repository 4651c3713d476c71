"""Property-based tests of configs and command-line overrides (issue 26).

Entry point: :func:`visiontasks.config.load_config` (``tools/train_det.py`` / ``train_seg.py`` /
``eval.py`` / ``load_model(yaml)``): the YAML file, its ``_base_``, the defaults and the
``key.sub=value`` overrides, validated. Generated: configs built from the real sections and keys
with values of every YAML type (and ``_base_`` values that are no path), YAML text with byte
mutations, and override strings with odd keys and values. Each must load (a dict whose values
have the types of the defaults) or give one InputError naming the config (or its base) file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _fuzz import clean, fuzz, write
from hypothesis import strategies as st

from visiontasks.config import DEFAULTS, load_config
from visiontasks.errors import InputError

BASE_YAML = b"""task: detection
model: {name: faster_rcnn, backbone: small, num_classes: 4, min_size: 256, max_size: 256}
data: {dataset: embedded, hflip_prob: 0.5}
train: {max_iters: 10, batch_size: 2, lr: 0.02, schedule: cosine, steps: [5]}
eval: {metric: voc07}
"""
KEYS = [f"{s}.{k}" for s in ("data", "train", "eval") for k in DEFAULTS[s]] + [
    "model.name", "model.num_classes", "model.backbone", "model.min_size", "model.box_score_thresh", "model.bogus",
    "task", "bogus.key", "_base_"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(), st.text(max_size=5),
                    st.sampled_from(["faster_rcnn", "fcn8s", "small", "vgg16", "detection", "segmentation", "1e-3",
                                     "nan", "-.inf", "0x10", "step", "voc07", "coco", "miou", "~", "yes", "on"]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(st.sampled_from(["a", "name", "lr", "1"]),
                                                                      kids, max_size=2)), max_leaves=6)
BASES = ["detection/default.yaml", "missing.yaml", ".", "..", "", "\x00", "/dev/null", "c.yaml", 5, ["a"],
         {"a": 1}, None, "/proc/self/mem", "x" * 300]


def _set(cfg: dict, key: str, value) -> None:
    node = cfg
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
    node[last] = value


@st.composite
def configs(draw) -> bytes:
    if draw(st.integers(0, 5)) == 0:  # YAML text, mutated
        text = bytearray(BASE_YAML)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text[at:at + draw(st.integers(0, 3))] = draw(st.one_of(
                st.binary(max_size=3), st.sampled_from([b":", b"- ", b"\t", b"{", b"[", b"&a ", b"*a", b"!!python/name:os.system",
                                                       b"\n  ", b"'", b"%YAML 1.1\n---\n", b"\xff"])))
        return bytes(text)
    cfg: dict = {"task": draw(st.sampled_from(["detection", "segmentation", "x"])),
                 "model": {"name": draw(st.sampled_from(["faster_rcnn", "fcn_small", "yolo_v1", "nope"]))}}
    if cfg["model"]["name"] == "faster_rcnn":
        cfg["model"]["backbone"] = "small"
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4)):
        value = draw(st.sampled_from(BASES)) if key == "_base_" else draw(values)
        _set(cfg, key, value)
    if draw(st.integers(0, 9)) == 0:
        cfg = draw(values)
    return yaml.safe_dump(cfg, allow_unicode=draw(st.booleans())).encode("utf-8")


overrides = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + ["model", "train", "a..b", "", ".", "model.x.y"]),
              st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().replace("\n...", "")),
                        st.text(max_size=6))),
    st.text(max_size=8)), max_size=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_config")
    (folder / "detection").mkdir()
    (folder / "detection" / "default.yaml").write_bytes(BASE_YAML)
    return folder


def _check_config(folder: Path, text: bytes, items: list[str]) -> None:
    path = write(folder, "c.yaml", text)
    cfg, err = clean(lambda: load_config(path, items), None)
    if err is not None:
        assert err.path == str(path) or b"_base_" in text, str(err)  # the config, or the base it names
        return
    assert set(cfg) >= {"task", "model", "data", "train", "eval"}
    for section in ("data", "train"):
        for key, default in DEFAULTS[section].items():
            value = cfg[section][key]
            if default is not None and value is not None:
                assert isinstance(value, (type(default), int) if isinstance(default, float) else type(default)), \
                    (section, key, value)


test_config_files, test_config_files_long = fuzz(_check_config, text=configs(), items=st.just([]))
test_config_overrides, test_config_overrides_long = fuzz(
    _check_config, text=st.just(BASE_YAML),
    items=overrides)


# ----------------------------------------------------------------------------- inputs hypothesis found, kept
DEFAULT_YAML = BASE_YAML.decode()  # a config of the real keys, independent of configs/


@pytest.mark.parametrize("text, items, words", [
    (DEFAULT_YAML.replace("name: faster_rcnn", "name: [faster_rcnn]"), [],
     "model.name must be a string, got ['faster_rcnn']"),  # was a TypeError traceback (unhashable type)
    (DEFAULT_YAML, ["model.name={a: 1}"], "model.name must be a string, got {'a': 1}"),  # TypeError
    ('_base_: "\\0"\n', [], "_base_ must be the path of a config file, got '\\x00'"),  # ValueError (NUL byte)
    (DEFAULT_YAML + "\nfoo: " + "[" * 2000 + "]" * 2000 + "\n", [], "YAML nested too deeply"),  # RecursionError
    (DEFAULT_YAML, ["train.lr=" + "[" * 2000], "nests its value too deeply"),  # RecursionError
], ids=["name-list", "override-name-dict", "base-nul", "deep-yaml", "deep-override"])
def test_found_config_errors(folder, text, items, words):
    path = write(folder, "c.yaml", text)
    with pytest.raises(InputError, match="c.yaml") as info:
        load_config(path, items)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_default_config_with_overrides_still_loads(folder):
    path = write(folder, "c.yaml", DEFAULT_YAML)
    cfg = load_config(path, ["train.lr=1e-3", "model.min_size=128", "data.classes=[a, b]"])
    assert cfg["train"]["lr"] == 0.001 and cfg["model"]["min_size"] == 128 and cfg["data"]["classes"] == ["a", "b"]


def test_found_a_section_override_merges_into_the_section(folder):
    """``train={}`` emptied the train section (no max_iters: a KeyError once training started)."""
    path = write(folder, "c.yaml", DEFAULT_YAML)
    cfg = load_config(path, ["train={}"])
    assert cfg["train"]["max_iters"] == 10 and cfg["train"]["lr"] == 0.02
    cfg = load_config(path, ["train={lr: 0.5, steps: [3]}"])
    assert cfg["train"]["max_iters"] == 10 and cfg["train"]["lr"] == 0.5 and cfg["train"]["steps"] == [3]
