"""``predict()`` from several threads on one Predictor (a web server's thread pool) — issue 26.

Each test runs the same inputs sequentially and then from 4 threads at once (every input several
times, interleaved) and asserts that every threaded result equals the sequential one exactly.
The inputs are first run once each, so the small-map convolution kernel choices
(:mod:`visiontasks.conv_select`, made by timing on the first call of each shape) are fixed; the
cold-start case (choices timed while other threads run) is checked within float rounding.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import visiontasks
from visiontasks.api import Predictor
from visiontasks.detection.proposals.selective_search import selective_search
from visiontasks.precision import cpu_bf16_supported
from visiontasks.registry import get_model

THREADS, REPEATS = 4, 3


def _images(embedded_root, n: int = 6) -> list:
    from visiontasks.data import read_image

    paths = sorted((embedded_root / "JPEGImages").iterdir())[:n]
    images = [read_image(p) for p in paths]  # uint8 CHW tensors, as a server would decode them
    images[1] = images[1][:, :, : images[1].shape[2] // 2]  # other sizes: other kernel choices and anchors
    images[2] = images[2].permute(1, 2, 0).numpy()  # HWC numpy
    return images


def _fields(result) -> tuple[torch.Tensor, ...]:
    if hasattr(result, "mask"):
        return (result.mask,)
    return result.boxes, result.scores, result.labels


def _threaded(model: Predictor, images: list) -> list:
    jobs = [i for _ in range(REPEATS) for i in range(len(images))]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda i: model.predict(images[i]), jobs))
    return list(zip(jobs, results))


def _assert_threads_match_sequential(model: Predictor, images: list) -> None:
    for image in images:  # warm-up: the conv kernel choices are made here
        model.predict(image)
    sequential = [_fields(model.predict(image)) for image in images]
    threaded = _threaded(model, images)
    assert len(threaded) == REPEATS * len(images)
    for i, result in threaded:
        for got, want in zip(_fields(result), sequential[i]):
            assert torch.equal(got, want), f"image {i}"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_default_detector_threads_equal_sequential(embedded_root, precision):
    if precision == "bf16" and not cpu_bf16_supported():
        pytest.skip("no native bf16 on this CPU (bf16 would fall back to fp32)")
    model = visiontasks.load_model("default", preset="evaluate", precision=precision)
    images = _images(embedded_root)
    _assert_threads_match_sequential(model, images)
    assert sum(len(model.predict(im).boxes) for im in images) > 0  # the comparison saw detections


def test_segmenter_threads_equal_sequential(embedded_root):
    torch.manual_seed(0)
    model = Predictor(get_model("fcn_small", num_classes=4), "segmentation", ["circle", "square", "triangle"])
    _assert_threads_match_sequential(model, _images(embedded_root, 4))


def test_proposal_detector_threads_equal_sequential(embedded_root):
    """Fast R-CNN computing selective-search proposals from 4 threads gets the sequential boxes.

    Each call's proposals are recorded and compared first, so a failure says which half differed.
    The proposer is the paper's mode, whose ranking noise is numpy's generator per call. OpenCV's
    presets draw it from the C library's process-global ``rand()``: reseeded and drawn under one
    lock in ``selective_search``, yet twice (stop 19 with another suite beside it; 2026-12-06 on an
    otherwise idle machine) a threaded call ranked an image's proposals differently from the
    sequential one — something else in the process advances that state while the CNN runs in
    the other threads (not found). Equal logits of two proposals in the same feature cells then
    let NMS keep the other box, so exact equality cannot hold for the presets under threads: a
    limit stated in docs/RELIABILITY.md. The presets' lock is tested alone below."""
    torch.manual_seed(0)
    net = get_model("fast_rcnn", num_classes=4, backbone="small", min_size=128, max_size=128,
                    proposer={"method": "selective_search", "mode": "paper", "resize_width": 128},
                    max_proposals=200, test={"score_thresh": 0.0})
    model = Predictor(net, "detection", ["circle", "square", "triangle"], preset="evaluate")
    model.score_thresh = 0.0  # random weights: keep every box so the comparison sees many
    images = _images(embedded_root, 4)
    local, propose = threading.local(), net.propose

    def recording(image: torch.Tensor) -> torch.Tensor:
        local.proposals = propose(image)
        return local.proposals

    net.propose = recording  # what predict() calls, under its own lock

    def run(i: int) -> tuple[int, torch.Tensor, tuple[torch.Tensor, ...]]:
        fields = _fields(model.predict(images[i]))
        return i, local.proposals, fields

    for i in range(len(images)):  # warm-up: the conv kernel choices are made here
        run(i)
    sequential = [run(i) for i in range(len(images))]
    jobs = [i for _ in range(REPEATS) for i in range(len(images))]
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(run, jobs))
    for i, proposals, fields in threaded:
        assert torch.equal(proposals, sequential[i][1]), f"image {i}: the selective-search ranking differs"
        for got, want in zip(fields, sequential[i][2]):
            assert torch.equal(got, want), f"image {i}: same proposals, other detections"
    assert len(sequential[0][2][0]) > 0


def test_selective_search_from_threads_equals_sequential(embedded_root):
    """``selective_search`` called from 4 threads with no lock of the caller's: OpenCV's fast preset
    draws its ranking from the process-global ``rand()``, so its ``srand`` + ``process()`` run as one
    critical section inside (without it, measured: every threaded call ranked differently)."""
    images = _images(embedded_root, 4)
    params = {"mode": "fast", "resize_width": 128, "max_proposals": 200}
    sequential = [selective_search(image, **params) for image in images]
    jobs = [i for _ in range(REPEATS) for i in range(len(images))]
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(lambda i: (i, selective_search(images[i], **params)), jobs))
    for i, boxes in threaded:
        np.testing.assert_array_equal(boxes, sequential[i], err_msg=f"image {i}")
    assert min(len(boxes) for boxes in sequential) > 0


def test_cold_start_threads_agree_within_rounding(embedded_root):
    """No warm-up: kernels are chosen by timing while other threads run; the first call of a shape
    returns oneDNN's output, later ones the chosen kernel's, equal within float rounding."""
    model = visiontasks.load_model("default", preset="evaluate")
    images = _images(embedded_root, 4)
    threaded = _threaded(model, images)
    reference = visiontasks.load_model("default", preset="evaluate")
    for i, result in threaded:
        want = reference.predict(images[i])
        torch.testing.assert_close(result.boxes, want.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(result.scores, want.scores, rtol=0, atol=1e-4)
        assert torch.equal(result.labels, want.labels)
