"""Train a segmenter: ``python tools/train_seg.py [--config C] [key.sub=value ...]``.

With no arguments it trains the default config (a small model on the embedded dataset's masks,
no download) and prints its mIoU. Under ``torchrun --nproc_per_node N`` it trains with DDP.
"""
from __future__ import annotations

import sys

from _common import REPO, run_cli
from train_det import train_main

DEFAULT_CONFIG = REPO / "configs" / "segmentation" / "default.yaml"


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, DEFAULT_CONFIG, "segmentation", description=__doc__)


if __name__ == "__main__":
    sys.exit(run_cli(main))
