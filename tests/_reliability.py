"""Shared pieces of the reliability tests: a tiny VOC-layout dataset, the tools, a run-directory snapshot."""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))

import predict  # noqa: E402
import train_det  # noqa: E402
import train_seg  # noqa: E402
from _common import run_cli  # noqa: E402

__all__ = ["make_tiny_voc", "snapshot", "call", "det_args", "seg_args", "train_det", "train_seg", "predict",
           "run_cli", "one_error_line", "tiny", "finished", "run"]

CLASSES = "data.classes=[circle,square,triangle]"


def make_tiny_voc(embedded_root: Path, dest: Path, n_train: int = 4, n_test: int = 2) -> Path:
    """A VOC-layout copy of a few images of the embedded set (fast to train and evaluate on)."""
    ids = {"trainval": [f"{i:06d}" for i in range(n_train)], "test": [f"{300 + i:06d}" for i in range(n_test)]}
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for split, names in ids.items():
        for i in names:
            shutil.copy(embedded_root / "JPEGImages" / f"{i}.jpg", dest / "JPEGImages")
            shutil.copy(embedded_root / "Annotations" / f"{i}.xml", dest / "Annotations")
            shutil.copy(embedded_root / "SegmentationClass" / f"{i}.png", dest / "SegmentationClass")
        text = "".join(f"{i}\n" for i in names)
        (dest / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
        (dest / "ImageSets" / "Segmentation" / f"{'train' if split == 'trainval' else split}.txt").write_text(text)
        (dest / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(text)
    return dest


def det_args(root: Path, out: Path, *extra: str) -> list[str]:
    """train_det.py arguments: a 2-iteration run of the small detector on ``root``."""
    return ["--out", str(out), "--device", "cpu", "data.dataset=voc", f"data.root={root}", CLASSES,
            "train.max_iters=2", "train.batch_size=2", "train.log_every=1", "train.checkpoint_every=1",
            "train.warmup_iters=0", "data.num_workers=0", "model.min_size=128", "model.max_size=128", *extra]


def seg_args(root: Path, out: Path, *extra: str) -> list[str]:
    """train_seg.py arguments: a 2-iteration run of the small FCN on ``root``."""
    return ["--out", str(out), "--device", "cpu", "data.dataset=voc", f"data.root={root}", CLASSES,
            "data.train_split=trainval", "data.test_split=test", "train.max_iters=2", "train.batch_size=2",
            "train.log_every=1", "train.checkpoint_every=1", "data.num_workers=0", *extra]


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha1}`` of every file under ``folder`` (empty when it does not exist)."""
    if not folder.exists():
        return {}
    if folder.is_file():
        return {".": hashlib.sha1(folder.read_bytes()).hexdigest()}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def call(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Runs a tool through run_cli in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = run_cli(main, argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_error_line(err: str) -> str:
    """The single ``error:`` line of ``err`` (asserting there is exactly one, and no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert err.rstrip().splitlines()[-1] == lines[0], f"something was printed after the error line:\n{err}"
    return lines[0]


@pytest.fixture(scope="module")
def tiny(embedded_root, tmp_path_factory) -> Path:
    """A tiny VOC-layout dataset (4 trainval, 2 test images), shared by a test module."""
    return make_tiny_voc(embedded_root, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A finished 2-iteration detection run on ``tiny``."""
    out = tmp_path_factory.mktemp("runs") / "det"
    assert run_cli(train_det.main, det_args(tiny, out)) == 0
    assert (out / "checkpoint_last.pt").is_file() and not (out / ".lock").exists()
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A private copy of the finished run."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy
