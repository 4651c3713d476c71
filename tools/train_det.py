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
from visiontasks.engine.run import format_metrics, run_training, undefined_metrics
from visiontasks.errors import InputError

DEFAULT_CONFIG = REPO / "configs" / "detection" / "default.yaml"
# Runs go under the checkout's runs/; installed (REPO is the package folder), under the current folder's.
RUNS = REPO / "runs" if (REPO / "visiontasks" / "__init__.py").is_file() else Path("runs")
EPILOG = """An existing run directory is never overwritten without --resume or --overwrite; a second
process on the same OUT stops at once (OUT/.lock). Bad input: one line on stderr, exit code 2
(add --debug for the traceback). See docs/RELIABILITY.md."""


def setup(argv: list[str] | None, default_config=DEFAULT_CONFIG, task: str = "detection",
          description: str | None = None):
    """Parses the command line and loads the config; nothing is written."""
    parser = argparse.ArgumentParser(description=description or __doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(default_config), help="YAML config (default: %(default)s)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<config folder>/<config name>)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/checkpoint_last.pt")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete the earlier run in OUT (checkpoint, logs, metrics, tb/, stage files) and start over")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--until", metavar="STAGE", help="stop after this training stage (e.g. finetune); "
                        "--resume continues")
    parser.add_argument("--shard", metavar="I/N", help="R-CNN: cache only shard I of N of the feature stage "
                        "into the fine-tuned OUT, then stop (a job array; then --resume). docs/DISTRIBUTED.md")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_iters=100")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    cfg = load_config(args.config, args.overrides)
    if cfg["task"] != task:
        raise ValueError(f"{args.config}: task is {cfg['task']!r}, this tool trains {task} models")
    config = Path(args.config)
    out = args.out or str(RUNS / config.parent.name / config.stem)
    return args, cfg, out


def train_main(argv: list[str] | None, default_config: Path, task: str, description: str | None = None) -> int:
    """setup → train → evaluate → print; shared by train_det.py and train_seg.py."""
    args, cfg, out = setup(argv, default_config, task, description)
    if args.shard is not None:
        from visiontasks.detection.rcnn.shards import cache_feature_shard

        if args.until is not None:
            raise InputError("--shard", "caches one shard of the feature stage and stops; it cannot be combined "
                                        "with --until")

        cache_feature_shard(cfg, out, args.shard, device=args.device, overwrite=args.overwrite)
        return 0
    metrics = run_training(cfg, out, resume=args.resume, device=args.device, overwrite=args.overwrite,
                           until=args.until)
    if args.until is not None and not metrics:  # stopped before the evaluating stage
        if is_main_process():
            print(f"stopped after stage {args.until!r} (--until); --resume continues. run directory: {out}")
        cleanup()
        return 0
    if is_main_process():  # under torchrun, one table, not one per process
        print(format_metrics(metrics))
        for key in undefined_metrics(metrics):
            print(f"warning: {key} is undefined (nothing to score in the test split); metrics.json holds null",
                  file=sys.stderr)
        print(f"run directory: {out}")
    cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, DEFAULT_CONFIG, "detection")


if __name__ == "__main__":
    sys.exit(run_cli(main))
