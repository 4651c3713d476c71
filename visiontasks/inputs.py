"""What ``predict`` runs on: image files, folders (recursively), globs and video files.

:func:`expand_inputs` turns the command line's arguments into a list of :class:`Input` (an image
file or a video), :func:`predict_inputs` runs a :class:`~visiontasks.api.Predictor` over them:

- an **image** gives ``OUT/<stem>_pred.png`` (names shared by several inputs get ``-2``, ``-3`` …);
- a **video** (read with OpenCV's ``VideoCapture``) gives ``OUT/<stem>_pred.mp4`` (``mp4v``;
  ``.avi`` MJPG where this OpenCV has no mp4 writer) through ``VideoWriter``: one output frame per
  input frame, at the input's frame rate. A frame that cannot be decoded is reported (one line) and
  the previous annotated frame is written in its place, so the output keeps the input's timing;
- with ``save_json``, detections in COCO results format (``image_id``, ``category_id``, ``bbox``
  as xywh, ``score``, plus ``category_name``): ``OUT/predictions.json`` for the images, where
  ``image_id`` is the image's path as found (a string: the file name, not a COCO integer id),
  and ``OUT/<stem>_pred.json`` per video, where ``image_id`` is the 0-based frame index.
  ``category_id`` is the model's 1-based class index (``classes[category_id - 1]``). A segmenter
  writes one entry per class present, ``segmentation`` as COCO RLE and ``score`` 1.0.

Files named one by one must all be readable (their headers are checked before anything runs).
Inside a folder or a glob an unreadable image is reported and skipped (one line each), never
fatal; the count of skipped files and frames is printed at the end. A tqdm bar runs over images
and over each video's frames (on a terminal).
"""
from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from visiontasks.errors import InputError

__all__ = ["Input", "IMAGE_EXTS", "VIDEO_EXTS", "expand_inputs", "check_inputs", "output_names", "iter_video",
           "predict_inputs", "result_to_json"]

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Input:
    """One thing to predict on.

    Attributes:
        path: the file.
        kind: "image" or "video".
        lenient: found in a folder or by a glob: skipped with one line when unreadable.
    """

    path: str
    kind: str
    lenient: bool


def _kind(path: str) -> str:
    return "video" if Path(path).suffix.lower() in VIDEO_EXTS else "image"


def expand_inputs(args: list[str]) -> list[Input]:
    """The images and videos named by ``args``: files, folders (searched recursively) and globs.

    Args:
        args: command-line arguments; a folder contributes its image and video files (by
            extension, sorted by path), a pattern holding ``*?[`` that is not an existing file is
            a glob (``**`` recurses).

    Returns:
        One :class:`Input` per file, in the order given.

    Raises:
        InputError: a named file or folder that does not exist, or a folder / glob that finds no
            image or video.
    """
    out: list[Input] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not found:
                raise InputError(arg, "is a folder holding no image or video file (searched recursively)")
            out += [Input(p, _kind(p), True) for p in found]
        elif not path.exists() and _GLOB_CHARS & set(arg):
            found = sorted(p for p in glob.glob(arg, recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not found:
                raise InputError(arg, "pattern matches no image or video file")
            out += [Input(p, _kind(p), True) for p in found]
        else:
            if not path.is_file():
                raise InputError(arg, f"{_kind(arg)} file not found")
            out.append(Input(arg, _kind(arg), False))
    return out


def check_inputs(inputs: list[Input]) -> None:
    """Reads the header of every file named on its own (a bad one stops the command before any output).

    Raises:
        InputError: an image whose header cannot be read, or a video OpenCV cannot open.
    """
    from visiontasks.data import image_size

    for item in inputs:
        if item.lenient:
            continue
        if item.kind == "image":
            image_size(item.path)
        else:
            import cv2

            cap = cv2.VideoCapture(item.path)
            ok = cap.isOpened()
            cap.release()
            if not ok:
                raise InputError(item.path, "cannot open as a video (OpenCV VideoCapture)")


def output_names(paths: list[str], warn: bool = True) -> list[str]:
    """``<stem>_pred.png`` per image, ``<stem>_pred`` per video (the writer adds ``.mp4``/``.avi``,
    the json ``.json``); inputs sharing a stem (``a/x.jpg``, ``b/x.jpg``) get ``<stem>-2_pred``,
    ``-3`` … in the order given, so no output overwrites another (a note line says so)."""
    used: set[str] = set()
    names = []
    for path in paths:
        stem = Path(path).stem
        ext = ".png" if _kind(path) == "image" else ""
        name, k = f"{stem}_pred{ext}", 1
        while name in used:
            k += 1
            name = f"{stem}-{k}_pred{ext}"
        if k > 1 and warn:
            print(f"note: {path} shares its name with an earlier input; writing {name}", file=sys.stderr)
        used.add(name)
        names.append(name)
    return names


def iter_video(path: str, report: Callable[[str], None] = print,
               max_bad_in_a_row: int = 25) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(frame index, HWC uint8 RGB frame or None)`` for every frame of a video file.

    ``None`` marks a frame that could not be decoded (reported through ``report``); the stream
    ends at the container's frame count, or after ``max_bad_in_a_row`` failed reads past it.

    Raises:
        InputError: OpenCV cannot open the file as a video.
    """
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise InputError(path, "cannot open as a video (OpenCV VideoCapture)")
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, bad = 0, 0
        while True:
            ok, frame = cap.read()
            if ok and frame is not None and frame.size:
                bad = 0
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            else:
                if index >= count or bad >= max_bad_in_a_row:
                    return
                bad += 1
                report(f"{path}: frame {index} cannot be decoded; skipped")
                yield index, None
            index += 1
    finally:
        cap.release()


def result_to_json(result: Any, image_id: int | str) -> list[dict[str, Any]]:
    """COCO results entries of one image's result (detections, or a segmenter's classes as RLE)."""
    if hasattr(result, "boxes"):
        entries = result.to_coco(0)
        for entry, name in zip(entries, result.label_names):
            entry["image_id"] = image_id
            entry["category_name"] = name
        return entries
    from pycocotools import mask as mask_utils

    mask = result.mask.numpy()
    entries = []
    for c in sorted(int(v) for v in np.unique(mask) if v > 0):
        rle = mask_utils.encode(np.asfortranarray((mask == c).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        name = result.class_names[c] if c < len(result.class_names) else str(c)
        entries.append({"image_id": image_id, "category_id": c, "segmentation": rle, "score": 1.0,
                        "category_name": name})
    return entries


def _open_writer(out: Path, name: str, fps: float, size: tuple[int, int]) -> tuple[Any, Path]:
    import cv2

    for ext, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
        dest = out / f"{name}{ext}"
        writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer, dest
        writer.release()
    raise InputError(out / name, "OpenCV has no video writer here (tried mp4v .mp4 and MJPG .avi)")


def _predict_video(predictor: Any, item: Input, name: str, out: Path, save_json: bool,
                   report: Callable[[str], None]) -> tuple[int, int]:
    """Writes the annotated video (and its json); returns ``(frames, frames skipped)``."""
    import cv2
    from tqdm import tqdm

    cap = cv2.VideoCapture(item.path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
    cap.release()
    writer, dest, last = None, None, None
    entries: list[dict[str, Any]] = []
    frames = skipped = 0
    try:
        for index, frame in tqdm(iter_video(item.path, report), total=total, desc=Path(item.path).name,
                                 unit="frame", disable=None, leave=False):
            frames += 1
            if frame is None:
                skipped += 1
                if writer is not None and last is not None:
                    writer.write(last)
                continue
            result = predictor.predict(frame)
            drawn = cv2.cvtColor(np.ascontiguousarray(result.draw()), cv2.COLOR_RGB2BGR)
            if writer is None:
                writer, dest = _open_writer(out, name, fps if fps > 0 else 25.0, (drawn.shape[1], drawn.shape[0]))
            writer.write(drawn)
            last = drawn
            if save_json:
                entries += result_to_json(result, index)
    finally:
        if writer is not None:
            writer.release()
    if save_json:
        (out / f"{name}.json").write_text(json.dumps(entries))
    print(f"{item.path}: {frames} frames -> {dest}" + (f" ({skipped} skipped)" if skipped else ""))
    return frames, skipped


def predict_inputs(predictor: Any, inputs: list[Input], out: str | os.PathLike[str], save_json: bool = False,
                   verbose: bool = True) -> dict[str, int]:
    """Runs ``predictor`` over ``inputs`` and writes the pictures, videos and json under ``out``.

    Args:
        predictor: a :class:`visiontasks.api.Predictor`.
        inputs: from :func:`expand_inputs`.
        out: the output folder (created).
        save_json: also write the COCO results files (module docstring).
        verbose: print each image's detections (or classes present).

    Returns:
        ``{"images": n, "videos": n, "frames": n, "skipped_files": n, "skipped_frames": n}``.

    Raises:
        InputError: a file named on its own (not ``lenient``) cannot be read.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = output_names([i.path for i in inputs])
    counts = {"images": 0, "videos": 0, "frames": 0, "skipped_files": 0, "skipped_frames": 0}
    images = [(i, n) for i, n in zip(inputs, names) if i.kind == "image"]
    entries: list[dict[str, Any]] = []
    bar = tqdm(images, desc="images", unit="image", disable=None if len(images) > 1 else True, leave=False)
    for item, name in bar:
        try:
            result = predictor.predict(item.path)
        except InputError as exc:
            if not item.lenient:
                raise
            bar.write(f"skipped: {exc}", file=sys.stderr)
            counts["skipped_files"] += 1
            continue
        dest = result.save(out / name)
        counts["images"] += 1
        if save_json:
            entries += result_to_json(result, item.path)
        if verbose and hasattr(result, "boxes"):
            bar.write(f"{item.path}: {len(result)} detections -> {dest}")
            for box, label, score in zip(result.boxes.tolist(), result.label_names, result.scores.tolist()):
                bar.write(f"  {label:>12s} {score:.3f} [{', '.join(f'{v:.1f}' for v in box)}]")
        elif verbose:
            present = sorted({result.class_names[int(c)] for c in result.mask.unique()})
            bar.write(f"{item.path}: classes {present} -> {dest}")
    if save_json and images:
        (out / "predictions.json").write_text(json.dumps(entries))
    for item, name in zip(inputs, names):
        if item.kind != "video":
            continue
        try:
            frames, skipped = _predict_video(predictor, item, name, out, save_json,
                                             lambda line: print(line, file=sys.stderr))
        except InputError as exc:
            if not item.lenient:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            counts["skipped_files"] += 1
            continue
        counts["videos"] += 1
        counts["frames"] += frames
        counts["skipped_frames"] += skipped
    if counts["skipped_files"] or counts["skipped_frames"]:
        print(f"skipped {counts['skipped_files']} unreadable file(s) and {counts['skipped_frames']} "
              f"undecodable frame(s)", file=sys.stderr)
    return counts
