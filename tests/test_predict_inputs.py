"""predict on folders (recursive), globs and videos; --save-json in COCO results format; unreadable
files and undecodable frames reported and skipped (issue 25, visiontasks/inputs.py)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from _reliability import call, predict
from visiontasks import inputs as vi
from visiontasks.errors import InputError
from visiontasks.results import DetectionResult

CLASSES = ["circle", "square", "triangle"]


class FakePredictor:
    """Returns one box whose x0 is the image's mean grey level / 20 (so a frame's index can be read back)."""

    task = "detection"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def predict(self, image):
        from visiontasks.api import to_tensor_image

        t = to_tensor_image(image)
        self.seen.append(tuple(t.shape[-2:]))
        x0 = round(float(t.mean()) * 255 / 20)
        return DetectionResult(boxes=torch.tensor([[x0, 2.0, x0 + 10.0, 22.0]]), scores=torch.tensor([0.9]),
                               labels=torch.tensor([2]), classes=CLASSES, image=t)


def _write_video(path: Path, n: int, size=(64, 48)) -> None:
    """n frames, frame i a uniform grey of 20 * i (MJPG keeps a flat frame within a level or two)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.new("RGB", (40, 30), (40, 40, 40)).save(root / "a.png")
    Image.new("RGB", (50, 20), (60, 60, 60)).save(root / "sub" / "b.jpg", quality=100)
    (root / "sub" / "deeper" / "c.png").write_text("not a png")   # corrupt: skipped
    (root / "sub" / "notes.txt").write_text("ignored: not an image")
    return root


def test_folder_is_searched_recursively_and_glob_expands(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    found = vi.expand_inputs([str(root)])
    assert [Path(i.path).relative_to(root).as_posix() for i in found] == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert all(i.lenient and i.kind == "image" for i in found)
    pngs = vi.expand_inputs([str(root / "**" / "*.png")])
    assert [Path(i.path).name for i in pngs] == ["a.png", "c.png"]
    (named,) = vi.expand_inputs([str(root / "a.png")])
    assert not named.lenient
    with pytest.raises(InputError, match="pattern matches no image"):
        vi.expand_inputs([str(root / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is a folder holding no image"):
        vi.expand_inputs([str(tmp_path / "empty")])


def test_folder_with_a_corrupt_file_is_reported_and_skipped(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = call(predict.main, [str(root), "--out", str(out), "--save-json"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_pred.png", "b_pred.png", "predictions.json"]
    skipped = [line for line in err.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and "c.png" in skipped[0]
    assert "skipped 1 unreadable file(s) and 0 undecodable frame(s)" in err
    assert Image.open(out / "b_pred.png").size == (50, 20)
    entries = json.loads((out / "predictions.json").read_text())
    assert isinstance(entries, list)
    for e in entries:  # the real default model: whatever it finds, in COCO results format
        assert set(e) == {"image_id", "category_id", "bbox", "score", "category_name"}
        assert e["image_id"] in (str(root / "a.png"), str(root / "sub" / "b.jpg"))
        assert CLASSES[e["category_id"] - 1] == e["category_name"] and len(e["bbox"]) == 4


def test_a_named_corrupt_file_still_stops_before_any_output(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path)
    out = tmp_path / "out"
    rc, _, err = call(predict.main, [str(root / "a.png"), str(root / "sub" / "deeper" / "c.png"),
                                     "--out", str(out)], capsys)
    assert rc == 2 and "c.png" in err and not out.exists()


def test_save_json_is_coco_results_per_image(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    fake = FakePredictor()
    counts = vi.predict_inputs(fake, vi.expand_inputs([str(root)]), tmp_path / "out", save_json=True, verbose=False)
    assert counts == {"images": 2, "videos": 0, "frames": 0, "skipped_files": 1, "skipped_frames": 0}
    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    # a.png grey 40 -> x0 2; b.jpg grey 60 -> x0 3; box [x0, 2, x0 + 10, 22] -> xywh [x0, 2, 10, 20]
    assert entries == [
        {"image_id": str(root / "a.png"), "category_id": 2, "bbox": [2.0, 2.0, 10.0, 20.0],
         "score": pytest.approx(0.9), "category_name": "square"},
        {"image_id": str(root / "sub" / "b.jpg"), "category_id": 2, "bbox": [3.0, 2.0, 10.0, 20.0],
         "score": pytest.approx(0.9), "category_name": "square"},
    ]


def test_video_in_video_out_one_frame_per_frame(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, 6)
    fake = FakePredictor()
    out = tmp_path / "out"
    counts = vi.predict_inputs(fake, vi.expand_inputs([str(video)]), out, save_json=True)
    assert counts["videos"] == 1 and counts["frames"] == 6 and counts["skipped_frames"] == 0
    assert fake.seen == [(48, 64)] * 6
    (written,) = [p for p in out.iterdir() if p.suffix in (".mp4", ".avi")]
    frames = _read_video(written)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    # frame i: a box from x = i; the json's image_id is the frame index
    entries = json.loads((out / "clip_pred.json").read_text())
    assert [e["image_id"] for e in entries] == list(range(6))
    assert [e["bbox"][0] for e in entries] == [float(i) for i in range(6)]
    # the drawn box changes the frame (the annotated frames were written, not the inputs)
    assert not np.array_equal(frames[5], np.full_like(frames[5], 100))


def test_video_through_the_tool_with_the_default_model(tmp_path: Path, capsys) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, 3)
    out = tmp_path / "out"
    rc, stdout, err = call(predict.main, [str(video), "--out", str(out), "--save-json"], capsys)
    assert rc == 0, err
    (written,) = [p for p in out.iterdir() if p.suffix in (".mp4", ".avi")]
    assert len(_read_video(written)) == 3 and "3 frames" in stdout
    assert isinstance(json.loads((out / "clip_pred.json").read_text()), list)


def test_an_undecodable_frame_is_reported_and_its_slot_kept(tmp_path: Path, monkeypatch, capsys) -> None:
    class Capture:  # frames 0, 1 fine, 2 undecodable, 3 fine; the container says 4 frames
        def __init__(self, path: str) -> None:
            self.i = 0

        def isOpened(self) -> bool:
            return True

        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FRAME_COUNT: 4.0, cv2.CAP_PROP_FPS: 5.0}.get(prop, 0.0)

        def read(self):
            i, self.i = self.i, self.i + 1
            if i >= 4 or i == 2:
                return False, None
            return True, np.full((48, 64, 3), 20 * i, np.uint8)

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"")
    lines: list[str] = []
    got = [(i, None if f is None else int(f[0, 0, 0])) for i, f in vi.iter_video(str(video), lines.append)]
    assert got == [(0, 0), (1, 20), (2, None), (3, 60)]
    assert lines == [f"{video}: frame 2 cannot be decoded; skipped"]
    out = tmp_path / "out"
    counts = vi.predict_inputs(FakePredictor(), vi.expand_inputs([str(video)]), out, save_json=True)
    assert (counts["frames"], counts["skipped_frames"]) == (4, 1)
    assert "skipped 0 unreadable file(s) and 1 undecodable frame(s)" in capsys.readouterr().err
    monkeypatch.undo()
    (written,) = [p for p in out.iterdir() if p.suffix in (".mp4", ".avi")]
    assert len(_read_video(written)) == 4  # the skipped frame's slot holds the previous annotated frame
    assert [e["image_id"] for e in json.loads((out / "broken_pred.json").read_text())] == [0, 1, 3]
