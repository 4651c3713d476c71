"""Proposals on disk: round trip, manifest checks, and one InputError naming the file for bad files."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from visiontasks.data.proposals import (MANIFEST_FORMAT, ProposalStore, check_params, proposals_path, read_manifest,
                                        read_proposals, read_timing, write_manifest, write_proposals, write_timing)
from visiontasks.detection.proposals import proposal_params
from visiontasks.errors import InputError

BOXES = np.array([[0, 0, 9, 9], [5.5, 2, 30, 40], [1, 1, 1, 1]], np.float32)


def test_round_trip_keeps_values_and_order(tmp_path):
    path = write_proposals(tmp_path, "000005", BOXES.astype(np.float64))
    assert path == tmp_path / "000005.npy" == proposals_path(tmp_path, "000005")
    assert np.load(path, allow_pickle=False).dtype == np.float32
    got = read_proposals(tmp_path, "000005")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), BOXES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000005.npy"]  # no temporary file left behind


def test_manifest_round_trip_and_format(tmp_path):
    params = proposal_params(mode="quality", max_proposals=2000)
    write_manifest(tmp_path, params)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"format": MANIFEST_FORMAT, "params": params}
    assert read_manifest(tmp_path)["params"] == params
    check_params(tmp_path, dict(params))  # same parameters: no error


@pytest.mark.parametrize("content, problem", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ('{"format": "other/1", "params": {}}', "'other/1'"),
    (f'{{"format": "{MANIFEST_FORMAT}"}}', "no 'params'"),
])
def test_bad_manifest_names_it(tmp_path, content, problem):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(InputError, match=problem) as err:
        read_manifest(tmp_path)
    assert err.value.path == str(tmp_path / "manifest.json")
    with pytest.raises(InputError):
        ProposalStore(tmp_path, proposal_params())


def test_stale_params_name_the_manifest_and_both_values(tmp_path):
    write_manifest(tmp_path, proposal_params(mode="quality"))
    with pytest.raises(InputError) as err:
        check_params(tmp_path, proposal_params(mode="fast"))
    assert err.value.path == str(tmp_path / "manifest.json")
    assert ("made with mode='quality', the config asks for mode='fast'; re-run tools/propose.py or point "
            "data.proposals elsewhere") in str(err.value)
    with pytest.raises(InputError, match=r"made with max_proposals=None, min_size=20, .*asks for "
                                         r"max_proposals=100, min_size=0;"):
        check_params(tmp_path, proposal_params(mode="quality", min_size=0, max_proposals=100))
    with pytest.raises(InputError, match="manifest.json"):
        ProposalStore(tmp_path, proposal_params(mode="fast"))


def _save_raw(path, array, allow_pickle=False):
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=allow_pickle)


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "cannot read proposals"),
    (lambda p: p.write_bytes(b""), "cannot read proposals"),
    (lambda p: _save_raw(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "cannot read proposals"),
    (lambda p: _save_raw(p, np.zeros((3, 3), np.float32)), r"\(R, 4\).*\(3, 3\)"),
    (lambda p: _save_raw(p, np.array(["a", "b", "c", "d"]).reshape(1, 4)), "must be numbers"),
    (lambda p: _save_raw(p, np.zeros((0, 4), np.float32)), "no proposals for this image"),
    (lambda p: _save_raw(p, np.array([[0, 0, 1, 1], [0, 0, np.nan, 1]], np.float32)), "proposal 1 .*non-finite"),
    (lambda p: _save_raw(p, np.array([[5, 0, 1, 1]], np.float32)), "proposal 0 is inverted"),
])
def test_bad_proposal_files_name_the_file(tmp_path, make, problem):
    path = tmp_path / "img1.npy"
    make(path)
    with pytest.raises(InputError, match=problem) as err:
        read_proposals(tmp_path, "img1")
    assert err.value.path == str(path)
    assert "\n" not in str(err.value)


def test_write_refuses_bad_boxes_and_ids(tmp_path):
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        write_proposals(tmp_path, "a", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        write_proposals(tmp_path, "a", np.array([[0, 0, np.inf, 1]]))
    with pytest.raises(ValueError, match="inverted"):
        write_proposals(tmp_path, "a", np.array([[0, 5, 1, 4]]))
    for bad in ("../evil", "sub/x", "", ".."):
        with pytest.raises(ValueError, match="image_id"):
            proposals_path(tmp_path, bad)
    assert not any(tmp_path.iterdir())


def test_store_reads_per_image_and_pickles(tmp_path):
    params = proposal_params()
    write_manifest(tmp_path, params)
    write_proposals(tmp_path, "a", BOXES)
    write_proposals(tmp_path, "b", BOXES[:1])
    store = ProposalStore(tmp_path, params)
    clone = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 1000  # the path and the params, no boxes
    assert clone.has("a") and clone.has("b") and not clone.has("c")
    np.testing.assert_array_equal(clone("b").numpy(), BOXES[:1])
    with pytest.raises(InputError, match="c.npy"):
        clone("c")
    assert ProposalStore(tmp_path).params is None  # no params: no manifest check
    with pytest.raises(InputError, match="proposals folder not found"):
        ProposalStore(tmp_path / "nowhere")


def test_timing_round_trip_and_corrupt(tmp_path):
    assert read_timing(tmp_path) == {}
    write_timing(tmp_path, {"b": 2.5, "a": 1})
    assert read_timing(tmp_path) == {"a": 1.0, "b": 2.5}
    (tmp_path / "timing.json").write_text('{"format": "visiontasks-proposals-timing/1", "seconds": {"a": -1}}')
    with pytest.raises(InputError, match="'a'.*-1") as err:
        read_timing(tmp_path)
    assert err.value.path == str(tmp_path / "timing.json")
