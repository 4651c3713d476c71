"""Precomputed proposals on disk: one ``.npy`` file per image and a manifest of the parameters.

Layout of a proposals folder ``DIR``::

    DIR/manifest.json    {"format": "visiontasks-proposals/1", "params": proposal_params(...)}
    DIR/<image_id>.npy   float32 (R, 4) xyxy boxes in original-image pixels, rank order
    DIR/timing.json      optional: {"format": "visiontasks-proposals-timing/1",
                                    "seconds": {image_id: seconds of the proposer}}

Every file is written atomically (``visiontasks.io.atomic_write``), so a killed run leaves only
complete files. Nothing is pickled: ``.npy`` files are read with ``allow_pickle=False``.
Reading proposals made with other parameters than wanted is an error naming ``manifest.json``
(:func:`check_params`), never silent reuse. :class:`ProposalStore` reads one image at a time.

Shape shorthand: R = proposals of an image.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = [
    "MANIFEST", "MANIFEST_FORMAT", "TIMING", "TIMING_FORMAT", "ProposalStore", "check_params", "params_diff",
    "proposals_path", "read_manifest", "read_proposals", "read_timing", "write_manifest", "write_proposals",
    "write_timing",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "visiontasks-proposals/1"
TIMING = "timing.json"
TIMING_FORMAT = "visiontasks-proposals-timing/1"
DEFAULT_HINT = "re-run tools/propose.py or point data.proposals elsewhere"


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read {what} ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"{what} is not valid JSON ({exc})") from None
    except RecursionError:  # thousands of nested [ or { (tests/test_fuzz_files.py)
        raise InputError(path, f"{what} is not usable JSON: nested too deeply") from None


def write_manifest(dir: str | os.PathLike[str], params: Mapping[str, Any]) -> Path:
    """Writes ``DIR/manifest.json`` atomically (the folder is created).

    Args:
        dir: the proposals folder.
        params: the proposal parameters (``proposal_params(...)``), JSON-able.

    Returns:
        The manifest's path.
    """
    path = Path(dir) / MANIFEST
    _write_json(path, {"format": MANIFEST_FORMAT, "params": dict(params)})
    return path


def read_manifest(dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a proposals folder.

    Returns:
        ``{"format": "visiontasks-proposals/1", "params": {...}}``.

    Raises:
        InputError: naming ``manifest.json`` when it is missing, not JSON, or not this format.
    """
    path = Path(dir) / MANIFEST
    manifest = _read_json(path, "proposals manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(path, f"not a proposals manifest: format is {got!r}, expected {MANIFEST_FORMAT!r}")
    if not isinstance(manifest.get("params"), dict):
        raise InputError(path, f"proposals manifest has no 'params' object (got {manifest.get('params')!r})")
    return manifest


def params_diff(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The keys (sorted) whose values differ between two parameter dicts (a missing key differs)."""
    missing = object()
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k, missing) != wanted.get(k, missing))


def _describe(params: Mapping[str, Any], keys: list[str]) -> str:
    def name(k: str) -> str:  # a key holding a line break stays on the error's one line (tests/test_fuzz_files.py)
        return k if k.isprintable() else repr(k)

    return ", ".join(f"{name(k)}={params[k]!r}" if k in params else f"no {name(k)}" for k in keys)


def check_params(dir: str | os.PathLike[str], params: Mapping[str, Any], hint: str = DEFAULT_HINT,
                 asker: str = "the config") -> None:
    """Checks that a proposals folder was made with ``params``.

    Args:
        dir: the proposals folder.
        params: the wanted parameters (``proposal_params(...)`` or a config's dict).
        hint: what to do about a mismatch (the end of the message).
        asker: who wants ``params`` ("the config", "this run").

    Raises:
        InputError: naming ``manifest.json`` when it is missing/corrupt or its params differ; the
            message lists each differing key with both values, e.g. "made with mode='quality',
            the config asks for mode='fast'; re-run tools/propose.py or point data.proposals elsewhere".
    """
    stored = read_manifest(dir)["params"]
    keys = params_diff(stored, params)
    if keys:
        raise InputError(Path(dir) / MANIFEST, f"proposals made with {_describe(stored, keys)}, {asker} asks for "
                                               f"{_describe(params, keys)}; {hint}")


def _check_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not image_id or image_id in (".", "..") or Path(image_id).name != image_id \
            or "\\" in image_id:
        raise ValueError(f"image_id must be a plain file stem, got {image_id!r}")
    return image_id


def proposals_path(dir: str | os.PathLike[str], image_id: str) -> Path:
    """``DIR/<image_id>.npy`` (the id must be a plain file stem: no folders)."""
    return Path(dir) / f"{_check_id(image_id)}.npy"


def write_proposals(dir: str | os.PathLike[str], image_id: str, boxes: np.ndarray | torch.Tensor) -> Path:
    """Writes one image's proposals atomically as float32 (R, 4) ``.npy``.

    Args:
        dir: the proposals folder (created if needed).
        image_id: the image's file stem.
        boxes: (R, 4) finite ``xyxy`` boxes (x2 >= x1, y2 >= y1) in original-image pixels, in rank order (R may be 0;
            reading such a file is an error, so the problem surfaces where the boxes are needed).

    Returns:
        The path written.
    """
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"proposals of {image_id!r} must be (R, 4), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"proposals of {image_id!r} hold non-finite values")
    if ((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])).any():
        raise ValueError(f"proposals of {image_id!r} hold inverted boxes (x2 < x1 or y2 < y1)")
    path = proposals_path(dir, image_id)
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
    return path


def read_proposals(dir: str | os.PathLike[str], image_id: str) -> torch.Tensor:
    """Reads one image's proposals.

    Returns:
        (R, 4) float32 tensor, ``xyxy`` original-image pixels, rank order, R >= 1.

    Raises:
        InputError: naming the ``.npy`` file when it is missing, unreadable or corrupt (pickled
            objects included), not (R, 4) numbers, holds non-finite values or inverted boxes, or
            is empty ("no proposals for this image").
    """
    path = proposals_path(dir, image_id)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, f"proposals file for image {image_id!r} not found") from None
    except Exception as exc:  # noqa: BLE001 - numpy's header parser answers a corrupt header with
        # SyntaxError or tokenize.TokenError besides ValueError (found by tests/test_fuzz_files.py)
        raise InputError(path, f"cannot read proposals ({type(exc).__name__}: {exc})".split("\n")[0]) from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(path, f"proposals must be an (R, 4) array, got shape {getattr(arr, 'shape', None)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(path, f"proposals must be numbers, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise InputError(path, "no proposals for this image")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InputError(path, f"proposal {row} holds a non-finite value: {arr[row].tolist()}")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"proposal {row} is inverted (x2 < x1 or y2 < y1): {arr[row].tolist()}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def write_timing(dir: str | os.PathLike[str], seconds: Mapping[str, float]) -> Path:
    """Writes ``DIR/timing.json`` atomically: seconds of the proposer per image id."""
    path = Path(dir) / TIMING
    _write_json(path, {"format": TIMING_FORMAT, "seconds": {k: float(v) for k, v in sorted(seconds.items())}})
    return path


def read_timing(dir: str | os.PathLike[str]) -> dict[str, float]:
    """Seconds of the proposer per image id from ``DIR/timing.json`` ({} when the file is absent).

    Raises:
        InputError: naming ``timing.json`` when it is corrupt.
    """
    path = Path(dir) / TIMING
    if not path.exists():
        return {}
    data = _read_json(path, "proposal timing file")
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != TIMING_FORMAT or not isinstance(seconds, dict):
        raise InputError(path, f"not a proposal timing file (expected format {TIMING_FORMAT!r} with 'seconds')")
    for k, v in seconds.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InputError(path, f"seconds of image {k!r} must be a number >= 0, got {v!r}")
    return {k: float(v) for k, v in seconds.items()}


class ProposalStore:
    """Reads precomputed proposals of one image at a time (cheap to pickle into DataLoader workers).

    Args:
        dir: the proposals folder.
        params: the parameters the caller wants; when given, the manifest is checked once here
            (:func:`check_params`), so stale proposals fail at start, naming ``manifest.json``.

    Raises:
        InputError: a missing folder, or a manifest that is missing/corrupt/stale (with ``params``).
    """

    def __init__(self, dir: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> None:
        self.dir = Path(dir)
        self.params = None if params is None else dict(params)
        if not self.dir.is_dir():
            raise InputError(self.dir, "proposals folder not found (make it with tools/propose.py)")
        if self.params is not None:
            check_params(self.dir, self.params)

    def __call__(self, image_id: str) -> torch.Tensor:
        """(R, 4) float32 proposals of ``image_id`` (see :func:`read_proposals`)."""
        return read_proposals(self.dir, image_id)

    def has(self, image_id: str) -> bool:
        """Whether ``image_id``'s file exists (not whether it is valid)."""
        return proposals_path(self.dir, image_id).is_file()

    def path(self, image_id: str) -> Path:
        """The file holding ``image_id``'s proposals."""
        return proposals_path(self.dir, image_id)

    def __repr__(self) -> str:
        return f"ProposalStore(dir={str(self.dir)!r}, params={self.params!r})"
