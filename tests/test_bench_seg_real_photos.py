"""bench/seg_real_photos.py: the table's rows come from tools/eval.py seg (hand-built 2-image split)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _bench import load_bench


def _load_bench():
    return load_bench("seg_real_photos")


def _write_root(root: Path) -> None:
    """Two 32x32 images: left half black, right half white; the right half is class 15 (person)."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 255
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 15
    ids = ["a", "b"]
    for i in ids:
        Image.fromarray(image).save(root / "JPEGImages" / f"{i}.jpg", quality=100)
        Image.fromarray(mask, mode="L").save(root / "SegmentationClass" / f"{i}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")


@pytest.mark.slow  # two tools/eval.py subprocesses: 117 s for the file on the shared 2 cores
def test_oracle_row_of_a_clean_two_region_split_is_100(tmp_path: Path) -> None:
    # Otsu splits black from white exactly; with oracle labels the white region takes class 15
    # and the black one background, so both classes present score IoU 1 -> 21-class mIoU 100.00.
    _write_root(tmp_path / "voc")
    bench = _load_bench()
    md = tmp_path / "t.md"
    assert bench.main(["--root", str(tmp_path / "voc"), "--methods", "otsu",
                       "--work", str(tmp_path / "w"), "--markdown", str(md)]) == 0
    row = [line for line in md.read_text().splitlines() if line.startswith("| otsu")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "100.00"
    oracle = json.loads((tmp_path / "w" / "otsu_oracle.json").read_text())
    assert oracle["per_class"]["person"] == 1.0


def test_missing_root_skips(tmp_path: Path, capsys) -> None:
    assert _load_bench().main(["--root", str(tmp_path / "absent"), "--work", str(tmp_path / "w")]) == 0
    assert capsys.readouterr().out.startswith("skip:")


def test_fmt_is_a_percentage() -> None:
    bench = _load_bench()
    assert bench.fmt(0.35114) == "35.11"
    assert bench.fmt(None) == "n/a"
