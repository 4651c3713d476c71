"""The bad-input battery of train_det.py / train_seg.py / predict.py and the API.

Each case makes one bad input in a fresh folder and asserts: exit code 2, exactly one ``error:`` line
on stderr (the last line) naming the file or key, no traceback, and the dataset and the output
folder unchanged. The cases fail before training starts, so each takes about a second.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _reliability import call, det_args, one_error_line, predict, seg_args, snapshot, tiny, train_det, train_seg
from PIL import Image

import visiontasks


@pytest.fixture
def ctx(tiny, tmp_path) -> dict:  # noqa: F811 (tiny is a fixture)
    root = tmp_path / "voc"
    shutil.copytree(tiny, root)
    return {"root": root, "tmp": tmp_path, "out": tmp_path / "out"}


def _yaml(ctx, text: str | bytes, name: str = "c.yaml") -> Path:
    path = ctx["tmp"] / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _xml(ctx, image_id: str = "000000") -> Path:
    return ctx["root"] / "Annotations" / f"{image_id}.xml"


def _jpg(ctx, image_id: str = "000000") -> Path:
    return ctx["root"] / "JPEGImages" / f"{image_id}.jpg"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _det(ctx, *extra):
    return train_det.main, det_args(ctx["root"], ctx["out"], *extra)


def _seg(ctx, *extra):
    return train_seg.main, seg_args(ctx["root"], ctx["out"], *extra)


def _config(ctx, path: Path, *extra):
    return train_det.main, ["--config", str(path), *det_args(ctx["root"], ctx["out"], *extra)]


def _bomb(ctx, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 160 x 160 = 25,600 > 2 x 5000: refused as a bomb


# name -> (setup(ctx, monkeypatch) -> (main, argv), substring of the error line)
TRAIN_CASES = {
    "config_missing": (lambda c, m: _config(c, c["tmp"] / "nope.yaml"), "nope.yaml: config file not found"),
    "config_is_folder": (lambda c, m: _config(c, c["tmp"]), "is a folder"),
    "config_not_utf8": (lambda c, m: _config(c, _yaml(c, b"task: detection\nmodel: {name: caf\xe9}\n")),
                        "c.yaml: not UTF-8"),
    "config_bad_yaml": (lambda c, m: _config(c, _yaml(c, "model: [unclosed\n")), "c.yaml: not valid YAML"),
    "config_is_list": (lambda c, m: _config(c, _yaml(c, "- a\n- b\n")), "c.yaml: a config must be a mapping"),
    "config_data_is_5": (lambda c, m: _config(c, _yaml(c, "_base_: %s\ndata: 5\n" % (
        Path(train_det.DEFAULT_CONFIG)))), "section 'data'"),
    "config_base_missing": (lambda c, m: _config(c, _yaml(c, "_base_: gone.yaml\n")), "gone.yaml"),
    "config_unicode_space_path_missing": (lambda c, m: _config(c, c["tmp"] / "mes configs é" / "ç a.yaml"),
                                          "ç a.yaml"),
    "override_without_equals": (lambda c, m: _det(c, "train.lr"), "key.sub=value"),
    "override_unknown_key": (lambda c, m: _det(c, "train.lrr=1"), "train.lrr"),
    "override_unknown_section": (lambda c, m: _det(c, "optim.lr=1"), "optim"),
    "lr_fast": (lambda c, m: _det(c, "train.lr=fast"), "train.lr must be a number, got 'fast'"),
    "max_iters_text": (lambda c, m: _det(c, "train.max_iters=many"), "train.max_iters"),
    "max_iters_float": (lambda c, m: _det(c, "train.max_iters=2.5"), "train.max_iters"),
    "batch_size_negative": (lambda c, m: _det(c, "train.batch_size=-1"), "batch_size"),
    "amp_text": (lambda c, m: _det(c, "train.amp=sometimes"), "train.amp"),
    "steps_not_list": (lambda c, m: _det(c, "train.steps=5"), "train.steps"),
    "schedule_unknown": (lambda c, m: _det(c, "train.schedule=zigzag"), "zigzag"),
    "model_unknown": (lambda c, m: _det(c, "model.name=nosuch"), "nosuch"),
    "model_kwarg_type": (lambda c, m: _det(c, "model.min_size=big"), "model.min_size"),
    "model_kwarg_unknown": (lambda c, m: _det(c, "model.wings=2"), "model.wings"),
    "num_classes_wrong": (lambda c, m: _det(c, "model.num_classes=7"), "model.num_classes=7"),
    "metric_of_other_task": (lambda c, m: _det(c, "eval.metric=miou"), "miou"),
    "dataset_unknown": (lambda c, m: _det(c, "data.dataset=imagenet"), "data.dataset"),
    "root_missing": (lambda c, m: _det(c, f"data.root={c['tmp'] / 'no such'}"), "no such: dataset folder not found"),
    "root_is_number": (lambda c, m: _det(c, "data.root=5"), "data.root"),
    "classes_duplicate": (lambda c, m: _det(c, "data.classes=[circle,circle,square]"), "classes"),
    "split_missing": (lambda c, m: _det(c, "data.train_split=nosplit"), "nosplit.txt"),
    "proposals_for_rpn_model": (lambda c, m: _det(c, f"data.proposals={c['tmp']}"), "data.proposals"),
    "device_gpu0": (lambda c, m: _det(c, "--device", "gpu0"), "gpu0"),
    "split_empty": (lambda c, m: ((c["root"] / "ImageSets/Main/trainval.txt").write_text("\n"), _det(c))[1],
                    "trainval.txt: split 'trainval' has no images"),
    "split_not_utf8": (lambda c, m: ((c["root"] / "ImageSets/Main/trainval.txt").write_bytes(b"00\xff00\n"),
                                     _det(c))[1], "trainval.txt: split file is not UTF-8"),
    "image_missing": (lambda c, m: (_jpg(c, "000001").unlink(), _det(c))[1], "000001.jpg: listed in"),
    "image_dangling_symlink": (lambda c, m: (_jpg(c, "000001").unlink(),
                                             _jpg(c, "000001").symlink_to(c["tmp"] / "gone.jpg"), _det(c))[2],
                               "000001.jpg"),
    "image_is_folder": (lambda c, m: (_jpg(c, "000002").unlink(), _jpg(c, "000002").mkdir(), _det(c))[2],
                        "000002.jpg: is a folder"),
    "image_empty_file": (lambda c, m: (_jpg(c, "000003").write_bytes(b""), _det(c))[1], "000003.jpg: cannot read"),
    "image_is_text": (lambda c, m: (_jpg(c, "000003").write_text("hello"), _det(c))[1], "000003.jpg: cannot read"),
    "test_image_truncated_header": (lambda c, m: (_jpg(c, "000301").write_bytes(_jpg(c, "000301").read_bytes()[:20]),
                                                  _det(c))[1], "000301.jpg"),
    "test_image_wrong_size": (lambda c, m: (Image.new("RGB", (50, 40)).save(_jpg(c, "000300")), _det(c))[1],
                              "000300.jpg: image is (40, 50)"),
    "image_png_named_jpg_wrong_size": (lambda c, m: (Image.new("RGB", (7, 9)).save(_jpg(c, "000001"), format="PNG"),
                                                     _det(c))[1], "000001.jpg: image is (9, 7)"),
    "image_bomb": (lambda c, m: (_bomb(c, m), _det(c))[1], "too large to decode safely"),
    "annotation_missing": (lambda c, m: (_xml(c, "000001").unlink(), _det(c))[1], "000001.xml: listed in"),
    "annotation_malformed": (lambda c, m: (_xml(c).write_text("<annotation><object>"), _det(c))[1],
                             "000000.xml: malformed XML"),
    "annotation_xxe": (lambda c, m: (_xml(c).write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>'),
        _det(c))[1], "000000.xml: refused hostile XML"),
    "annotation_unknown_class": (lambda c, m: (_edit(_xml(c), "<name>", "<name>dragon"), _det(c))[1], "dragon"),
    "annotation_coordinate_text": (lambda c, m: (_edit(_xml(c), "<xmin>", "<xmin>left"), _det(c))[1],
                                   "000000.xml: <xmin>"),
    "annotation_box_inverted": (lambda c, m: (_edit(_xml(c), "<xmin>", "<xmin>900"),
                                              _edit(_xml(c), "<xmax>", "<xmax>9"), _det(c))[2], "000000.xml: object #0"),
    "seg_mask_wrong_size": (lambda c, m: (Image.new("P", (10, 10)).save(c["root"] / "SegmentationClass/000001.png"),
                                          _seg(c))[1], "000001.png: mask is (10, 10)"),
    "seg_with_detection_config": (lambda c, m: (train_seg.main, ["--config", str(train_det.DEFAULT_CONFIG),
                                                                 "--out", str(c["out"])]),
                                  "this tool trains segmentation"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_bad_input_is_one_line_and_changes_nothing(ctx, monkeypatch, capsys, case):
    setup, words = TRAIN_CASES[case]
    main, argv = setup(ctx, monkeypatch)
    data_before, out_before = snapshot(ctx["root"]), snapshot(ctx["out"])
    rc, _, err = call(main, argv, capsys)
    line = one_error_line(err)
    assert rc == 2, err
    assert words in line, line
    assert snapshot(ctx["root"]) == data_before
    assert snapshot(ctx["out"]) == out_before and not ctx["out"].exists()


def _image(ctx, name="photo.jpg", size=(40, 30)) -> Path:
    path = ctx["tmp"] / name
    Image.new("RGB", size, (120, 60, 30)).save(path)
    return path


PREDICT_CASES = {
    "missing": (lambda c: [str(c["tmp"] / "gone.jpg")], "gone.jpg: image file not found"),
    "folder": (lambda c: ((c["tmp"] / "nothing").mkdir(), [str(c["tmp"] / "nothing")])[1],
               "is a folder holding no image"),  # a folder with images is an input (tests/test_predict_inputs.py)
    "empty_file": (lambda c: ((c["tmp"] / "e.jpg").write_bytes(b""), [str(c["tmp"] / "e.jpg")])[1], "e.jpg"),
    "text_as_jpg": (lambda c: ((c["tmp"] / "t.jpg").write_text("hi"), [str(c["tmp"] / "t.jpg")])[1], "t.jpg"),
    "second_of_two_bad": (lambda c: [str(_image(c)), str(c["tmp"] / "gone.png")], "gone.png"),
    "device_gpu0": (lambda c: [str(_image(c)), "--device", "gpu0"], "gpu0"),
    "out_is_file": (lambda c: ((c["tmp"] / "f").write_text("x"), [str(_image(c)), "--out", str(c["tmp"] / "f")])[1],
                    "not a folder"),
    "run_without_config": (lambda c: [str(_image(c)), "--run", str(c["root"])], "no config.yaml"),
    "weights_garbage": (lambda c: ((c["tmp"] / "w.pt").write_bytes(b"PK\x03\x04junk"),
                                   [str(_image(c)), "--weights", str(c["tmp"] / "w.pt")])[1], "w.pt"),
    "config_missing": (lambda c: [str(_image(c)), "--config", str(c["tmp"] / "no.yaml")], "no.yaml"),
}


@pytest.mark.parametrize("case", sorted(PREDICT_CASES))
def test_predict_bad_input_is_one_line_and_writes_nothing(ctx, capsys, case):
    setup, words = PREDICT_CASES[case]
    argv = setup(ctx)
    if "--out" not in argv:
        argv += ["--out", str(ctx["out"])]
    rc, _, err = call(predict.main, argv, capsys)
    assert rc == 2 and words in one_error_line(err), err
    assert not ctx["out"].exists()


def test_predict_same_names_do_not_overwrite(ctx, capsys):
    (ctx["tmp"] / "a").mkdir()
    (ctx["tmp"] / "b").mkdir()
    paths = [_image(ctx, "a/x.jpg"), _image(ctx, "b/x.jpg", (50, 20)), _image(ctx, "x.png", (22, 33))]
    rc, out, err = call(predict.main, [*map(str, paths), "--out", str(ctx["out"])], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in ctx["out"].iterdir())
    assert names == ["x-2_pred.png", "x-3_pred.png", "x_pred.png"]
    assert Image.open(ctx["out"] / "x-2_pred.png").size == (50, 20)
    assert Image.open(ctx["out"] / "x-3_pred.png").size == (22, 33)
    assert err.count("shares its name") == 2


@pytest.mark.parametrize("make", ["grey", "rgba", "16bit", "exif_rotated", "unicode space", "palette", "tiny"])
def test_predict_accepts_what_users_have(ctx, capsys, make):
    path = ctx["tmp"] / f"{make} ü.png"
    if make == "grey":
        Image.new("L", (40, 30), 90).save(path)
    elif make == "rgba":
        Image.new("RGBA", (40, 30), (9, 9, 9, 0)).save(path)
    elif make == "16bit":
        Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(path)
    elif make == "exif_rotated":
        path = path.with_suffix(".jpg")
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 on display; pixels are used as stored
        Image.new("RGB", (40, 30)).save(path, exif=exif)
    elif make == "palette":
        Image.new("P", (40, 30), 3).save(path)
    elif make == "tiny":
        Image.new("RGB", (1, 1)).save(path)
    else:
        Image.new("RGB", (40, 30)).save(path)
    rc, out, err = call(predict.main, [str(path), "--out", str(ctx["out"])], capsys)
    assert rc == 0, err
    (png,) = ctx["out"].iterdir()
    assert Image.open(png).size == Image.open(path).size


@pytest.fixture(scope="module")
def model():
    return visiontasks.load_model("default")


@pytest.mark.parametrize("image, words", [
    (torch.rand(3, 20, 20) * 255, "values in [0, 1]"),
    (torch.full((3, 8, 8), float("nan")), "values in [0, 1]"),
    (-torch.rand(3, 8, 8), "values in [0, 1]"),
    (torch.zeros(3, 8, 8, dtype=torch.int64), "uint8"),
    (torch.zeros(1, 8, 8), "3 channels"),
    (np.zeros((8, 8, 4), np.uint8), "HWC RGB"),
    (np.zeros((8, 8, 3), np.float32), "uint8"),
])
def test_api_refuses_ambiguous_arrays_in_one_line(model, image, words):
    with pytest.raises(ValueError, match=words.replace("[", "\\[").replace("]", "\\]")) as info:
        model.predict(image)
    assert "\n" not in str(info.value)


def test_api_uint8_and_float_agree(model):
    img = (torch.rand(3, 40, 40) * 255).to(torch.uint8)
    a, b = model.predict(img), model.predict(img.float() / 255)
    torch.testing.assert_close(a.boxes, b.boxes)


@pytest.mark.parametrize("kwargs, words", [({"source": "nowhere/x.pt"}, "no such file"),
                                           ({"device": "gpu0"}, "gpu0")])
def test_api_load_model_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        visiontasks.load_model(**kwargs)
