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
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
import time
from pathlib import Path

from _common import run_cli
from tqdm import tqdm

from visiontasks.data import read_image
from visiontasks.detection.proposals import (check_params, proposal_params, proposals_path, propose, read_manifest,
                                             read_timing, write_manifest, write_proposals, write_timing)
from visiontasks.detection.proposals.store import MANIFEST, TIMING
from visiontasks.errors import InputError

FLUSH_EVERY_S = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="VOC-layout folder (ImageSets/Main/, JPEGImages/)")
    parser.add_argument("--split", required=True, help="name of ImageSets/Main/<split>.txt")
    parser.add_argument("--mode", default="fast", choices=["fast", "quality"])
    parser.add_argument("--resize-width", type=int, default=500,
                        help="resize to this width before proposing, 0 = keep the size (default: %(default)s)")
    parser.add_argument("--min-size", type=float, default=20,
                        help="drop boxes with a side below this many original pixels (default: %(default)s)")
    parser.add_argument("--max-proposals", type=int, default=None, help="keep the first N per image (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    parser.add_argument("--out", required=True, help="proposals folder")
    parser.add_argument("--overwrite", action="store_true", help="delete DIR's proposals and start over")
    return parser


def _read_ids(root: Path, split: str) -> list[str]:
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(split_file, f"split file for split {split!r} not found") from None
    except UnicodeDecodeError:
        raise InputError(split_file, "split file is not UTF-8 text") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    for image_id in ids:
        if not (root / "JPEGImages" / f"{image_id}.jpg").is_file():
            raise InputError(root / "JPEGImages" / f"{image_id}.jpg", f"listed in {split_file} but missing")
    return ids


def _prepare_out(out: Path, params: dict, overwrite: bool) -> None:
    """Writes the manifest, refusing (or, with overwrite, clearing) a folder made otherwise."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out exists and is not a folder")
    if overwrite and out.is_dir():
        for path in [*out.glob("*.npy"), out / TIMING, out / MANIFEST]:
            path.unlink(missing_ok=True)
    if (out / MANIFEST).exists():
        read_manifest(out)
        check_params(out, params, asker="this run",
                     hint="pass --overwrite to delete them and start over, or choose another --out")
        return
    if out.is_dir() and any(out.glob("*.npy")):
        raise InputError(out, "holds .npy files but no manifest.json, so their parameters are unknown; "
                              "pass --overwrite to delete them, or choose another --out")
    write_manifest(out, params)


def _init_worker() -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _work(job: tuple[str, str, str, dict]) -> tuple[str, int, float, tuple[str, str] | None]:
    """Proposes one image and writes its file: ``(id, boxes, seconds, (path, problem) or None)``."""
    image_id, image_path, out, params = job
    try:
        rgb = read_image(image_path).permute(1, 2, 0).numpy()
        start = time.perf_counter()
        boxes = propose(rgb, params)
        seconds = time.perf_counter() - start
        write_proposals(out, image_id, boxes)
    except InputError as exc:  # InputError does not survive pickling back from a worker
        return image_id, 0, 0.0, (exc.path, exc.problem)
    return image_id, len(boxes), seconds, None


def _run_jobs(jobs: list, workers: int, out: Path, timing: dict[str, float]) -> tuple[int, int, list[str]]:
    done, boxes, empty = 0, 0, []
    last_flush = time.monotonic()
    executor = None
    if workers > 1:
        # fork on Linux: the workers start at once instead of each importing torch again, and this
        # process has run neither OpenCV nor torch yet (ProcessPoolExecutor forks them all before its
        # own thread starts); spawn elsewhere (fork is unsafe on macOS)
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                          initializer=_init_worker)
        results = executor.map(_work, jobs, chunksize=1)
    else:
        results = map(_work, jobs)
    try:
        with tqdm(results, total=len(jobs), desc="selective search", unit="img") as bar:
            for image_id, n, seconds, error in bar:
                if error is not None:
                    raise InputError(*error)
                done, boxes = done + 1, boxes + n
                timing[image_id] = seconds
                if n == 0:
                    empty.append(image_id)
                if time.monotonic() - last_flush > FLUSH_EVERY_S:
                    write_timing(out, timing)
                    last_flush = time.monotonic()
    finally:
        write_timing(out, timing)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return done, boxes, empty


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    params = proposal_params(mode=args.mode, resize_width=args.resize_width or None, min_size=args.min_size,
                             max_proposals=args.max_proposals)
    root, out = Path(args.root), Path(args.out)
    ids = _read_ids(root, args.split)
    _prepare_out(out, params, args.overwrite)
    todo = [i for i in ids if not proposals_path(out, i).is_file()]
    timing = {k: v for k, v in read_timing(out).items() if proposals_path(out, k).is_file()}
    jobs = [(i, str(root / "JPEGImages" / f"{i}.jpg"), str(out), params) for i in todo]
    start = time.perf_counter()
    try:
        done, boxes, empty = _run_jobs(jobs, args.workers, out, timing)
    except KeyboardInterrupt:
        finished = sum(proposals_path(out, i).is_file() for i in ids)
        print(f"interrupted: {finished} of {len(ids)} images have proposals in {out}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    skipped = len(ids) - len(todo)
    ss_time = sum(timing[i] for i in todo)
    print(f"{args.split}: {done} images proposed, {skipped} skipped (already done), {len(ids)} in the split")
    if done:
        print(f"mean {boxes / done:.1f} boxes per image; selective search {ss_time / done:.2f} s per image "
              f"({wall:.1f} s wall with {args.workers} worker{'s' * (args.workers > 1)})")
    if empty:
        print(f"warning: {len(empty)} images got no proposals (e.g. {proposals_path(out, empty[0])}); "
              "reading them is an error", file=sys.stderr)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
