"""Strip a run's checkpoint down to what inference needs (model weights, config, class names).

    python tools/export_weights.py runs/detection/default/checkpoint_last.pt weights/default_det.pt

The result loads with ``visiontasks.load_model(path)``; optimizer, scheduler and RNG states are
dropped (they only matter for ``--resume``), which makes the file about 3x smaller.
"""
from __future__ import annotations

import argparse
import sys

from _common import run_cli

from visiontasks.engine.checkpoint import load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by tools/train_det.py or train_seg.py")
    parser.add_argument("out", help="where to write the inference-only checkpoint")
    args = parser.parse_args(argv)
    state = load_checkpoint(args.checkpoint)
    slim = {key: state[key] for key in ("model", "config", "meta", "iteration") if key in state}
    save_checkpoint(args.out, slim)
    print(f"wrote {args.out} (iteration {slim.get('iteration')})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
