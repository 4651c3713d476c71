"""VOC colour map (against the devkit's listed colours) and label PNG round-trips."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visiontasks.data import read_label_png, save_label_png, voc_colormap
from visiontasks.errors import InputError


def test_colormap_matches_the_devkit():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    # VOClabelcolormap.m: background, aeroplane, bicycle, bird, ..., person (15), tvmonitor (20), void (255)
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[2].tolist() == [0, 128, 0]
    assert cmap[3].tolist() == [128, 128, 0]
    assert cmap[15].tolist() == [192, 128, 128]
    assert cmap[20].tolist() == [0, 64, 128]
    assert cmap[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in cmap.tolist()}) == 256


def test_round_trip_keeps_indices_and_writes_a_palette(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 21, (17, 23)).astype(np.int64)
    mask[0, :5] = 255
    path = save_label_png(tmp_path / "sub" / "m.png", mask)
    assert np.array_equal(read_label_png(path), mask)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert np.array_equal(np.array(img.convert("RGB"))[0, 0], voc_colormap()[255])
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temporary file left


def test_bad_masks_and_files(tmp_path):
    with pytest.raises(ValueError):
        save_label_png(tmp_path / "a.png", np.full((3, 3), 256))
    with pytest.raises(ValueError):
        save_label_png(tmp_path / "a.png", np.zeros((3, 3, 3)))
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="mode RGB"):
        read_label_png(tmp_path / "rgb.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError) as err:
        read_label_png(tmp_path / "junk.png")
    assert err.value.path == str(tmp_path / "junk.png")
    with pytest.raises(InputError, match="not found"):
        read_label_png(tmp_path / "missing.png")
