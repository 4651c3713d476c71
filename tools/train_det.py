"""Train a detector: ``python tools/train_det.py [--config C] [key.sub=value ...]``.

With no arguments it trains the default config (the small Faster R-CNN on the embedded dataset,
no download) and prints its VOC mAP. Under ``torchrun --nproc_per_node N`` it trains with DDP.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import REPO, run_cli

from visiontasks.config import load_config
from visiontasks.engine.distributed import cleanup, is_main_process
from visiontasks.engine.run import format_metrics, run_training

DEFAULT_CONFIG = REPO / "configs" / "detection" / "default.yaml"


def setup(argv: list[str] | None, default_config=DEFAULT_CONFIG, task: str = "detection"):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(default_config), help="YAML config (default: %(default)s)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<config folder>/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint_last.pt")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_iters=100")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if cfg["task"] != task:
        raise ValueError(f"{args.config}: task is {cfg['task']!r}, this tool trains {task} models")
    config = Path(args.config)
    out = args.out or str(REPO / "runs" / config.parent.name / config.stem)
    return args, cfg, out


def train_main(argv: list[str] | None, default_config: Path, task: str) -> int:
    """setup → train → evaluate → print; shared by train_det.py and train_seg.py."""
    args, cfg, out = setup(argv, default_config, task)
    metrics = run_training(cfg, out, resume=args.resume, device=args.device)
    if is_main_process():  # under torchrun, one table, not one per process
        print(format_metrics(metrics))
        print(f"run directory: {out}")
    cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, DEFAULT_CONFIG, "detection")


if __name__ == "__main__":
    sys.exit(run_cli(main))
