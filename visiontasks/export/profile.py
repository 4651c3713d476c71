"""Where an exported graph spends its time, by operator type (onnxruntime's profiler).

    shares = op_time_shares("default_int8.onnx", image)   # {"QLinearConv": 0.61, "MaxRoiPool": 0.02, ...}

Used to say what the layers left in float (RoI pooling, NMS, box decoding) cost in an int8 graph.

Shape shorthand: image (3, H, W) float32 in [0, 1] (segmenters: (B, 3, H, W) at the exported size).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

__all__ = ["op_time_shares"]


def op_time_shares(path: str | os.PathLike, image: torch.Tensor, threads: int = 2, runs: int = 3) -> dict[str, float]:
    """The share of the graph's kernel time spent in each operator type, over ``runs`` calls after one warm-up.

    Args:
        path: the .onnx file.
        image: the input (a detector's (3, H, W) image, or a segmenter's (B, 3, H, W) batch).
        threads: intra-op threads.
        runs: profiled calls.

    Returns:
        ``{op_type: fraction}``, largest first; fractions sum to 1 (onnxruntime's node events only).
    """
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        feed = {name: image.numpy().astype(np.float32)}
        session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"].get("op_name", "?")] += float(event["dur"])
    whole = sum(totals.values()) or 1.0
    return dict(sorted(((k, v / whole) for k, v in totals.items()), key=lambda kv: -kv[1]))
