"""Precompute region proposals (selective search) for a VOC-layout split, one file per image.

    python tools/propose.py --root VOC2007 --split test --out proposals/ss_fast_test
    python tools/propose.py --root VOC2007 --split trainval --mode quality --workers 4 --out DIR

Reads the ids of ``ROOT/ImageSets/Main/SPLIT.txt`` and the images ``ROOT/JPEGImages/<id>.jpg``,
writes ``DIR/manifest.json`` (the parameters) first, then ``DIR/<id>.npy`` per image (float32
(R, 4) xyxy original pixels, ranked; written atomically) and ``DIR/timing.json`` (seconds of
selective search per image, without decoding and writing). Resumable: images whose file exists
are skipped, so rerunning the same command after a kill continues. A DIR made with other
parameters is refused (one line naming its manifest) unless ``--overwrite``, which deletes the
proposal files, manifest and timing it holds and starts over. Bad input exits 2 with one line.

More than one machine (docs/DISTRIBUTED.md): under ``torchrun --nproc_per_node K [--nnodes M]``
each rank proposes every (world size)-th image and rank 0 writes the manifest after a barrier;
in a job array each task runs ``--shard I/N`` and a last job runs ``--merge`` (same options),
which writes the manifest once every image has its file. Each shard resumes on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import run_cli

from visiontasks.data.proposals import proposals_path
from visiontasks.detection.proposals import proposal_params
from visiontasks.detection.proposals.precompute import precompute_proposals, read_split_ids
from visiontasks.detection.proposals.shards import clear_folder, merge_shards, parse_shard
from visiontasks.detection.proposals.selective_search import MODES
from visiontasks.engine import distributed as D


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="VOC-layout folder (ImageSets/Main/, JPEGImages/)")
    parser.add_argument("--split", required=True, help="name of ImageSets/Main/<split>.txt")
    parser.add_argument("--mode", default="fast", choices=list(MODES),
                        help="paper: Uijlings et al.'s fast mode (the VOC07 configs' proposals); fast, quality: "
                             "OpenCV's presets (default: %(default)s, as DEFAULT_PROPOSER)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the paper mode's ranking noise "
                        "(default: %(default)s)")
    parser.add_argument("--resize-width", type=int, default=500,
                        help="resize to this width before proposing, 0 = keep the size (default: %(default)s)")
    parser.add_argument("--min-size", type=float, default=20,
                        help="drop boxes with a side below this many pixels of the resized (working) image, as "
                             "selective_search_boxes.m (default: %(default)s)")
    parser.add_argument("--max-proposals", type=int, default=None, help="keep the first N per image (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    parser.add_argument("--out", required=True, help="proposals folder")
    parser.add_argument("--overwrite", action="store_true", help="delete DIR's proposals and start over")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--shard", help="I/N: propose only shard I of N (a job array task); then --merge")
    split.add_argument("--merge", action="store_true",
                       help="after all --shard I/N jobs: check every image has its file, write the manifest")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    params = proposal_params(mode=args.mode, resize_width=args.resize_width or None, min_size=args.min_size,
                             max_proposals=args.max_proposals, seed=args.seed)
    out = Path(args.out)
    shard = parse_shard(args.shard) if args.shard else None
    if args.merge:
        merged = merge_shards(out, read_split_ids(args.root, args.split), params)
        print(f"merged {merged} shard folder(s); wrote {out / 'manifest.json'}")
        return 0
    rank, world, _ = D.init_distributed()  # under torchrun: this rank's shard, rank 0 merges
    if world > 1:
        if args.overwrite and rank == 0:
            clear_folder(out)
        D.barrier()
        shard, args.overwrite = (rank, world), False
    try:
        summary = precompute_proposals(args.root, args.split, params, out, workers=args.workers,
                                       overwrite=args.overwrite, shard=shard, progress=rank == 0)
        if world > 1:
            D.barrier()
            if rank == 0:
                merge_shards(out, read_split_ids(args.root, args.split), params)
            D.barrier()
            D.cleanup()
    except KeyboardInterrupt:
        ids = read_split_ids(args.root, args.split)
        finished = sum(proposals_path(out, i).is_file() for i in ids)
        print(f"interrupted: {finished} of {len(ids)} images have proposals in {out}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"{args.split}{where}: {summary.done} images proposed, {summary.skipped} skipped (already done), "
          f"{summary.total} in the split")
    if summary.done:
        print(f"mean {summary.boxes / summary.done:.1f} boxes per image; selective search "
              f"{summary.seconds / summary.done:.2f} s per image ({summary.wall:.1f} s wall with {args.workers} "
              f"worker{'s' * (args.workers > 1)})")
    if summary.empty:
        print(f"warning: {len(summary.empty)} images got no proposals (e.g. {proposals_path(out, summary.empty[0])}); "
              "reading them is an error", file=sys.stderr)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
