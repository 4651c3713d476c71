"""tools/eval.py det|seg --report DIR: a self-contained page with each section; bad input is one line and costs nothing.

The detection case is tests/test_eval_tide_cli.py's "loc" image plus a background detection and a
duplicate, on a drawn 100x100 JPEG: TIDE labels (hand-checked) one loc, one dupe, one bkg error and
no miss, so the gallery shows exactly those. The segmentation case has a perfect image and one
half wrong (IoU hand-computed), so the worst image is known.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_eval_cli_options import run, write_dets, write_voc
from visiontasks.evaluation.report_html import MARKER
from visiontasks.evaluation.tide import tide_errors

# 1-based inclusive: cats A, B and dog C; a cat detection shifted off B (IoU 1/3: loc)
A, B, C, SHIFTED_B = (1, 1, 10, 10), (21, 1, 30, 10), (41, 1, 50, 10), (26, 1, 35, 10)
FAR = (70, 70, 90, 90)  # no box near it: bkg
DET_SECTIONS = ("metrics", "per-class", "pr-curves", "errors", "confusion", "gallery")


def _images(root: Path, ids: list[str]) -> Path:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    return root / "JPEGImages"


@pytest.fixture
def voc(tmp_path: Path) -> tuple[Path, Path]:
    root = write_voc(tmp_path / "voc", {"a": [("cat", A, 0), ("cat", B, 0), ("dog", C, 0)]})
    dets = tmp_path / "dets"
    write_dets(dets, "cat", [("a", 0.9, A), ("a", 0.85, A), ("a", 0.8, SHIFTED_B), ("a", 0.7, FAR)])
    write_dets(dets, "dog", [("a", 0.95, C)])
    return root, dets


def check_page(folder: Path, sections: tuple[str, ...]) -> str:
    """Asserts the page holds each section, every <img> is a data URI or a file in the folder, no http(s) link."""
    page = (folder / "index.html").read_text(encoding="utf-8")
    for section in sections:
        assert f'<section id="{section}">' in page, section
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert sources
    for src in sources:
        assert src.startswith("data:image/") or ((folder / src).is_file() and "/" not in src and ".." not in src), src
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I)
    assert (folder / MARKER).is_file()
    return page


def _figures(page: str, kind: str) -> int:
    block = page.split(f'id="gallery-{kind}"', 1)[1].split("</div>", 1)[0]
    return block.count("<figure>")


def test_tide_per_detection_labels_hand_checked() -> None:
    boxes = np.array([A, A, SHIFTED_B, FAR, C], np.float64) - [1, 1, 1, 1]
    args = ([boxes], [np.array([1, 1, 1, 1, 2])], [np.array([0.9, 0.85, 0.8, 0.7, 0.95])],
            [np.array([A, B, C], np.float64) - 1], [np.array([1, 1, 2])])
    plain, labelled = tide_errors(*args), tide_errors(*args, per_detection=True)
    for key in ("ap50", "main", "special", "counts"):
        assert plain[key] == labelled[key]  # the figures do not change
    det = labelled["detections"]
    error = {int(i): str(e) for i, e in zip(det["index"], det["error"])}
    assert error == {0: "tp", 1: "dupe", 2: "loc", 3: "bkg", 4: "tp"}
    assert int(det["gt"][list(det["index"]).index(2)]) == 1  # the loc error points at B, row 1
    assert len(labelled["missed"]["index"]) == 0  # B is pointed at by the loc error: not a miss


def test_det_report_sections_gallery_and_replacing_an_earlier_report(voc, tmp_path: Path) -> None:
    root, dets = voc
    images = _images(root, ["a"])
    report = tmp_path / "report"
    argv = ["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog", "--images", str(images),
            "--report", str(report), "--out", str(tmp_path / "r.json")]
    rc, out, err = run(argv)
    assert rc == 0, err
    page = check_page(report, DET_SECTIONS)
    assert (report / "pr_curves.png").is_file()
    assert [_figures(page, k) for k in ("cls", "loc", "both", "dupe", "bkg", "miss")] == [0, 1, 0, 1, 1, 0]
    assert "a: cat 0.80" in page  # the loc error's caption
    assert json.loads((tmp_path / "r.json").read_text())["errors"]["main"]["loc"] > 0  # --report implies --errors
    rc, _, err = run(argv)  # an earlier report is replaced
    assert rc == 0, err


def test_report_into_a_foreign_folder_is_one_line_and_writes_nothing(voc, tmp_path: Path) -> None:
    root, dets = voc
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--report", str(folder), "--out", str(tmp_path / "r.json")])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not an earlier report" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"] and not (tmp_path / "r.json").exists()
    assert out == ""  # refused before the evaluation ran


def test_images_that_are_not_a_folder_are_one_line(voc, tmp_path: Path) -> None:
    root, dets = voc
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--images", str(tmp_path / "nowhere"), "--report", str(tmp_path / "rep")])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nowhere" in err and out == ""
    assert not (tmp_path / "rep").exists()


def test_report_without_images_says_so_in_one_line(voc, tmp_path: Path) -> None:
    root, dets = voc
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--report", str(tmp_path / "report")])
    assert rc == 0, err
    lines = [line for line in err.splitlines() if "gallery" in line]
    assert len(lines) == 1 and "--images" in lines[0]
    page = check_page(tmp_path / "report", DET_SECTIONS)
    assert "No gallery: no images" in page and 'id="gallery-loc"' not in page


def test_report_with_segm_is_one_line(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
          "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25.0,
                           "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9,
                                                   "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}]))
    for extra in (["--report", str(tmp_path / "rep")], ["--errors"]):
        rc, _, err = run(["det", "--metric", "coco", "--annotations", str(tmp_path / "gt.json"), "--detections",
                          str(tmp_path / "d.json"), "--iou-type", "segm", *extra])
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "segm is not supported" in err
    assert not (tmp_path / "rep").exists()


def test_coco_report_with_gallery(tmp_path: Path) -> None:
    def xywh(b):
        return [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1]

    gt = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
          "annotations": [{"id": k + 1, "image_id": 7, "category_id": c, "bbox": xywh(b), "area": 100.0, "iscrowd": 0}
                          for k, (b, c) in enumerate([(A, 1), (B, 1), (C, 2)])]}
    dets = [{"image_id": 7, "category_id": c, "bbox": xywh(b), "score": s}
            for b, c, s in [(A, 1, 0.9), (SHIFTED_B, 1, 0.8), (C, 2, 0.95)]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps(dets))
    images = _images(tmp_path, ["a"])
    rc, _, err = run(["det", "--metric", "coco", "--annotations", str(tmp_path / "gt.json"), "--detections",
                      str(tmp_path / "d.json"), "--images", str(images), "--report", str(tmp_path / "rep")])
    assert rc == 0, err
    page = check_page(tmp_path / "rep", DET_SECTIONS)
    assert _figures(page, "loc") == 1 and "VOC metrics only" in page


def _seg_layout(tmp_path: Path) -> tuple[Path, Path]:
    from visiontasks.data import save_label_png

    root, preds = tmp_path / "voc", tmp_path / "preds"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("good\nbad\n")
    gt = np.zeros((20, 20), np.uint8)
    gt[:, 10:] = 1  # half background, half class 1
    wrong = gt.copy()
    wrong[:, 5:10] = 1  # 50 background pixels called class 1
    for image_id, pred in (("good", gt), ("bad", wrong)):
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", gt)
        save_label_png(preds / f"{image_id}.png", pred)
    _images(root, [])
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "JPEGImages" / "bad.jpg")
    return root, preds


def test_seg_report_worst_first(tmp_path: Path) -> None:
    root, preds = _seg_layout(tmp_path)
    rc, _, err = run(["seg", "--root", str(root), "--split", "val", "--predictions", str(preds), "--classes",
                      "background", "cat", "--report", str(tmp_path / "rep")])
    assert rc == 0, err
    page = check_page(tmp_path / "rep", ("metrics", "per-class", "confusion", "worst"))
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    # bad: background IoU 100/200 = 0.5, class 1 IoU 200/300; mean 58.3 %
    assert captions == ["bad: IoU 58.3", "good: IoU 100.0"]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(voc, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    root, dets = voc
    report = tmp_path / "report"
    rc, _, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog", "--images",
                      str(_images(root, ["a"])), "--report", str(report)])
    assert rc == 0, err
    shot = tmp_path / "shot.png"
    console = _chromium(browser, report / "index.html", shot)
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn, not a blank page
    assert not console, console
    # the check sees console errors: a page with one
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom')</script></body></html>")
    assert any("boom" in line for line in _chromium(browser, bad, tmp_path / "bad.png"))


def _chromium(browser: str, page: Path, shot: Path) -> list[str]:
    """Screenshots ``page`` headless; returns the console lines Chromium logged (messages, uncaught errors)."""
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _subset(embedded_root: Path, tmp_path: Path, count: int = 3) -> Path:
    """The first ``count`` test images of the embedded dataset as their own VOC layout."""
    ids = (embedded_root / "ImageSets" / "Main" / "test.txt").read_text().split()[:count]
    root = tmp_path / "subset"
    for sub, ext in (("Annotations", ".xml"), ("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
        (root / sub).mkdir(parents=True)
        for i in ids:
            shutil.copy(embedded_root / sub / f"{i}{ext}", root / sub / f"{i}{ext}")
    for split_dir, split in (("Main", "test"), ("Segmentation", "val")):
        (root / "ImageSets" / split_dir).mkdir(parents=True)
        (root / "ImageSets" / split_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_checkpoint_reports_draw_the_dataset_images(embedded_root: Path, tmp_path: Path) -> None:
    weights = Path(__file__).resolve().parents[1] / "weights"
    root = _subset(embedded_root, tmp_path)
    rc, _, err = run(["det", "--checkpoint", str(weights / "default_det.pt"), "--root", str(root), "--split", "test",
                      "--report", str(tmp_path / "det")])
    assert rc == 0, err
    page = check_page(tmp_path / "det", DET_SECTIONS)
    assert "No gallery" not in page and "gallery" not in err  # the images come from the dataset
    rc, _, err = run(["seg", "--checkpoint", str(weights / "default_seg.pt"), "--root", str(root), "--split", "val",
                      "--report", str(tmp_path / "seg")])
    assert rc == 0, err
    page = check_page(tmp_path / "seg", ("metrics", "per-class", "confusion", "worst"))
    assert page.count("<figcaption>") == 3


def test_classic_method_report_scores_foreground_background(embedded_root: Path, tmp_path: Path) -> None:
    root = _subset(embedded_root, tmp_path, count=2)
    rc, _, err = run(["seg", "--method", "otsu", "--root", str(root), "--split", "val", "--out", str(tmp_path / "r.json"),
                      "--report", str(tmp_path / "rep")])
    assert rc == 0, err
    page = check_page(tmp_path / "rep", ("metrics", "per-class", "confusion", "worst"))
    ious = [float(c.rsplit("IoU ", 1)[1]) for c in re.findall(r"<figcaption>([^<]*)</figcaption>", page)]
    assert len(ious) == 2 and ious == sorted(ious)  # worst first
    assert "foreground" in page


def test_worst_segmentations_iou_hand_computed() -> None:
    from visiontasks.evaluation.report_gallery import WorstSegmentations

    gt, pred = np.array([[0, 2], [255, 3]]), np.array([[0, 1], [1, 0]])
    # foreground/background: gt [[0, 1], [void, 1]]: bg IoU 1/2, fg IoU 1/2
    binary = WorstSegmentations(foreground_background=True)
    binary.add("x", pred, gt)
    assert binary.matrix(2).tolist() == [[1, 0], [1, 1]]
    # by class: class 0 IoU 1/2, classes 1, 2, 3 IoU 0: mean 1/8
    classes = WorstSegmentations()
    classes.add("x", pred, gt)
    assert '<figcaption>x: IoU 50.0</figcaption>' in binary.html(lambda i: None, ["background", "foreground"])
    assert '<figcaption>x: IoU 12.5</figcaption>' in classes.html(lambda i: None, ["bg", "a", "b", "c"])
