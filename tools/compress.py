"""Truncated SVD of a trained detector's fc layers (Fast R-CNN §3.1), written as a new checkpoint.

    python tools/compress.py runs/detection/fast_rcnn_vgg16_voc07 fast_svd.pt --ranks 1024 256

SOURCE is a run directory or a checkpoint; the result carries the config with
``model.fc_svd_ranks`` set, so ``visiontasks.load_model(OUT)``, ``tools/eval.py det --checkpoint
OUT`` and ``tools/predict.py`` build the compressed model and load it. A rank of 0 keeps that
layer. Only the inference state is written (no optimizer: a compressed model is not resumed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

from visiontasks.api import load_model
from visiontasks.detection.svd import compress_fc
from visiontasks.engine.checkpoint import save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a run directory or a checkpoint of a detector with fc6/fc7")
    parser.add_argument("out", help="the compressed checkpoint to write")
    parser.add_argument("--ranks", type=int, nargs="+", required=True,
                        help="singular values kept in fc6, fc7, … (paper: 1024 256; 0 = keep the layer)")
    args = parser.parse_args(argv)
    if any(r < 0 for r in args.ranks):
        raise ValueError(f"--ranks must be >= 0, got {args.ranks}")
    if Path(args.out).resolve() == Path(args.source).resolve():
        raise ValueError(f"{args.out}: refusing to overwrite the source checkpoint; choose another output file")
    predictor = load_model(args.source)
    if predictor.task != "detection" or not hasattr(predictor.model, "roi_head"):
        raise ValueError(f"{args.source}: not a two-stage detector with fc layers to compress")
    if predictor.config["model"].get("fc_svd_ranks"):
        raise ValueError(f"{args.source}: already compressed (model.fc_svd_ranks="
                         f"{predictor.config['model']['fc_svd_ranks']})")
    ranks = [r or None for r in args.ranks]
    before = sum(p.numel() for p in predictor.model.parameters())
    model = compress_fc(predictor.model, ranks)
    config = {**predictor.config, "model": {**predictor.config["model"], "fc_svd_ranks": ranks}}
    after = sum(p.numel() for p in model.parameters())
    save_checkpoint(args.out, {"model": model.state_dict(), "config": config,
                               "meta": {"classes": list(predictor.classes), "task": "detection"}})
    print(f"wrote {args.out}: fc ranks {args.ranks}, parameters {before:,} -> {after:,}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
