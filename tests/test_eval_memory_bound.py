"""Large VOC / COCO results within a memory bound (issue 26): class-by-class scoring equals scoring all at once,
chunked reading equals reading whole, and an input too large for the memory available is refused in one line
naming the file, before anything is read. The bound's figures are measured by ``bench/eval_large.py``; only the
logic is tested here (available memory patched low), never memory or time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visiontasks.errors import InputError
from visiontasks.evaluation import memory
from visiontasks.evaluation.voc import results as results_module
from visiontasks.evaluation.voc import results_parse
from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth
from visiontasks.evaluation.voc.results import count_lines, read_voc_results, read_voc_results_by_class
from visiontasks.evaluation.voc.score import evaluate_voc_files, score_voc

CLASSES = ["cat", "dog", "bird"]
IDS = [f"{i:06d}" for i in range(6)]
# per image: (class, xmin, ymin, xmax, ymax, difficult), 1-based as in the XML
OBJECTS = {0: [("cat", 10, 10, 50, 50, 0), ("cat", 60, 60, 90, 90, 0)], 1: [("dog", 5, 5, 40, 30, 0)],
           2: [("cat", 20, 20, 60, 70, 1), ("dog", 1, 1, 20, 20, 0)], 3: [], 4: [("cat", 30, 30, 80, 80, 0)],
           5: [("dog", 10, 20, 50, 60, 0), ("dog", 12, 22, 52, 62, 0)]}


def _voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(i + "\n" for i in IDS))
    for k, i in enumerate(IDS):
        objs = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                       f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for c, x0, y0, x1, y1, d in OBJECTS[k])
        (root / "Annotations" / f"{i}.xml").write_text(f"<annotation><size><width>100</width><height>100</height>"
                                                       f"</size>{objs}</annotation>")
    return root


def _detections(folder: Path, seed: int) -> Path:
    """Random comp4 files for cat and dog (bird has none): boxes near the objects and random ones, scores with
    ties (two decimals), images in random order, CRLF in one file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(["cat", "dog"]):
        lines = []
        for _ in range(int(rng.integers(5, 40))):
            k = int(rng.integers(0, len(IDS)))
            mine = [o for o in OBJECTS[k] if o[0] == name]
            if mine and rng.random() < 0.6:
                box = np.array(mine[int(rng.integers(0, len(mine)))][1:5]) + rng.integers(-6, 7, 4)
            else:
                x0, y0 = rng.integers(1, 60, 2)
                box = np.array([x0, y0, x0 + rng.integers(5, 40), y0 + rng.integers(5, 40)])
            lines.append(f"{IDS[k]} {rng.integers(0, 20) / 20:.2f} {' '.join(str(int(v)) for v in box)}")
        end = "\r\n" if c else "\n"
        (folder / f"comp4_det_test_{name}.txt").write_text(end.join(lines) + end, newline="")
    return folder


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_class_by_class_scoring_equals_scoring_all_at_once(tmp_path, seed, metric):
    root, det = _voc(tmp_path / "voc"), _detections(tmp_path / "det", seed)
    streamed = evaluate_voc_files(root, "test", det, CLASSES, metric)
    gt = load_detection_ground_truth(root, "test", CLASSES)
    whole = score_voc(read_voc_results(det, "test", CLASSES, IDS), (gt.boxes, gt.labels, gt.difficult), CLASSES,
                      metric)
    assert streamed["mAP"] == whole["mAP"] or (np.isnan(streamed["mAP"]) and np.isnan(whole["mAP"]))
    np.testing.assert_array_equal(streamed["curves"]["ap"], whole["curves"]["ap"])
    np.testing.assert_array_equal(streamed["curves"]["npos"], whole["curves"]["npos"])
    for key in ("precision", "recall"):
        for a, b in zip(streamed["curves"][key], whole["curves"][key]):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
    assert streamed["curves"]["precision"][2] is None  # bird: no ground truth, no file
    assert 0.0 < streamed["mAP"] <= 1.0


def test_reading_in_small_chunks_equals_reading_whole(tmp_path, monkeypatch):
    det = _detections(tmp_path / "det", 3)
    whole = read_voc_results(det, "test", CLASSES, IDS)
    by_class = dict(read_voc_results_by_class(det, "test", CLASSES, IDS))
    monkeypatch.setattr(results_parse, "CHUNK_BYTES", 7)  # lines cut anywhere, CR and LF of a CRLF apart
    chunked = read_voc_results(det, "test", CLASSES, IDS)
    for a, b in zip(whole, chunked):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert sorted(by_class) == [1, 2]
    for label, (boxes, labels, scores) in by_class.items():
        for k in range(len(IDS)):
            mine = whole[1][k] == label
            np.testing.assert_array_equal(boxes[k], whole[0][k][mine])
            np.testing.assert_array_equal(scores[k], whole[2][k][mine])
            assert (labels[k] == label).all()


def test_the_exact_parser_in_small_chunks_numbers_lines_as_the_whole_text(tmp_path, monkeypatch):
    """Line breaks str.splitlines knows (CR LF, U+2028, VT) cut anywhere by the chunks: same rows, same line number."""
    text = "000001 0.5 1 1 5 5\r\n000002 0.25 2 2 6 6\u2028000003 0.75 3 3 7 7\x0b\n000001\u00a00.5 1 1 5 5\r"
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_text(text, encoding="utf-8", newline="")
    for chunk in (3, 5, 1 << 20):
        monkeypatch.setattr(results_parse, "CHUNK_BYTES", chunk)
        boxes, labels, scores = read_voc_results(tmp_path, "test", CLASSES, IDS)
        assert [s.tolist() for s in scores[:4]] == [[], [0.5, 0.5], [0.25], [0.75]], chunk
        path.write_text(text + "000009 0.5 1 1 5 5\n", encoding="utf-8", newline="")
        with pytest.raises(InputError, match=r"line 6: image id '000009'"):  # 1, 2, 3, 4 (VT), 5 (empty: \n), 6
            read_voc_results(tmp_path, "test", CLASSES, IDS)
        path.write_text(text, encoding="utf-8", newline="")


def test_count_lines_bounds_the_detections(tmp_path):
    path = tmp_path / "f.txt"
    for data, lines in ((b"", 0), (b"a\n", 1), (b"a", 1), (b"a\r\nb\r\n", 2), (b"a\rb", 2), (b"\n\n\n", 3)):
        path.write_bytes(data)
        assert count_lines(path) == lines, data


def _low_memory(monkeypatch, available: int) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: (available, "MemAvailable"))
    monkeypatch.setattr(memory, "MIN_CHECKED", 0)  # the files here are tiny


def test_results_too_large_for_the_memory_available_are_one_line_naming_the_largest_file(tmp_path, monkeypatch):
    root, det = _voc(tmp_path / "voc"), _detections(tmp_path / "det", 1)
    cat, dog = count_lines(det / "comp4_det_test_cat.txt"), count_lines(det / "comp4_det_test_dog.txt")
    largest = "comp4_det_test_cat.txt" if cat >= dog else "comp4_det_test_dog.txt"
    need = (max(cat, dog) * results_module.STREAM_CLASS_BYTES_PER_DETECTION
            + (cat + dog) * results_module.STREAM_TOTAL_BYTES_PER_DETECTION)
    _low_memory(monkeypatch, need - 1)
    with pytest.raises(InputError) as err:
        evaluate_voc_files(root, "test", det, CLASSES)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(det / largest) + ": ")
    assert f"scoring {cat + dog:,} detections ({max(cat, dog):,} in this, the largest results file) needs about " \
           f"{need / 2**20:.0f} MiB of memory; {(need - 1) / 2**20:.0f} MiB is available (MemAvailable)" in message
    _low_memory(monkeypatch, need)
    assert evaluate_voc_files(root, "test", det, CLASSES)["mAP"] > 0


def test_errors_and_the_whole_reader_check_all_detections_and_name_the_folder(tmp_path, monkeypatch):
    root, det = _voc(tmp_path / "voc"), _detections(tmp_path / "det", 2)
    total = count_lines(det / "comp4_det_test_cat.txt") + count_lines(det / "comp4_det_test_dog.txt")
    _low_memory(monkeypatch, total * results_module.FULL_BYTES_PER_DETECTION)
    read_voc_results(det, "test", CLASSES, IDS)  # just fits
    with pytest.raises(InputError, match=rf"^{tmp_path / 'det'}: scoring {total:,} detections of 2 results files "
                                         r"needs about \d+ MiB of memory"):
        evaluate_voc_files(root, "test", det, CLASSES, errors=True)  # --errors needs more per detection
    _low_memory(monkeypatch, 0)
    with pytest.raises(InputError, match=r"det: scoring .* needs about"):
        read_voc_results(det, "test", CLASSES, IDS)


def test_a_bad_class_file_name_is_reported_before_any_file_is_read(tmp_path):
    det = _detections(tmp_path / "det", 0)
    (det / "comp4_det_test_unicorn.txt").write_text("not even a line\n")
    with pytest.raises(InputError, match=r"comp4_det_test_unicorn.txt: class 'unicorn' is not one of the 3 classes"):
        next(read_voc_results_by_class(det, "test", CLASSES, IDS))


def test_small_needs_are_never_refused_and_large_ones_are_worded_in_gib(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: (0, "MemAvailable"))
    memory.check_memory(memory.MIN_CHECKED - 1, "f.txt", "x")  # a machine this short fails anyway
    with pytest.raises(InputError, match=r"^f.txt: x needs about 3.0 GiB of memory; 0 MiB is available"):
        memory.check_memory(3 * 2**30, "f.txt", "x")


def test_available_memory_is_the_least_of_meminfo_and_the_cgroup_limit(tmp_path, monkeypatch):
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text(f"{3 * 2**30}\n")
    usage.write_text(f"{2**30}\n")
    monkeypatch.setattr(memory, "_CGROUPS", ((str(limit), str(usage)),))
    found = memory.available_memory()
    assert found is not None and found[0] <= 2 * 2**30
    limit.write_text("max\n")  # cgroup v2: no limit
    found = memory.available_memory()
    assert found is None or found[1] == "MemAvailable"


def _coco_files(tmp_path: Path) -> tuple[Path, Path]:
    import json

    gt = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
                           "iscrowd": 0}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [60, 60, 10, 10], "score": 0.5}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    return tmp_path / "gt.json", tmp_path / "res.json"


def test_a_coco_results_json_too_large_for_the_memory_available_is_one_line(tmp_path, monkeypatch):
    from visiontasks.evaluation.coco import evaluate_coco_files
    from visiontasks.evaluation.coco_io import COCO_BYTES_PER_FILE_BYTE

    gt, res = _coco_files(tmp_path)
    need = res.stat().st_size * COCO_BYTES_PER_FILE_BYTE
    _low_memory(monkeypatch, need - 1)
    with pytest.raises(InputError) as err:
        evaluate_coco_files(gt, res)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{res}: scoring this 0 MiB COCO results json with pycocotools "
                                                      "needs about 0 MiB of memory; 0 MiB is available")
    _low_memory(monkeypatch, need)
    assert evaluate_coco_files(gt, res)["mAP"] == pytest.approx(1.0)


def test_results_given_in_memory_are_not_changed_by_pycocotools(tmp_path):
    import json

    from visiontasks.evaluation.coco import coco_evaluate

    gt, res = _coco_files(tmp_path)
    dets = json.loads(res.read_text())
    coco_evaluate(gt, dets)
    assert dets == json.loads(res.read_text())  # loadRes adds id, area, iscrowd, segmentation to what it gets


def test_matching_in_blocks_of_few_pairs_equals_matching_at_once(monkeypatch):
    """Crowded images (many same-class boxes): the overlaps are computed a few pairs at a time, same result."""
    from visiontasks.evaluation.voc import ap, best_match

    rng = np.random.default_rng(5)

    def boxes(n: int) -> np.ndarray:
        xy = rng.integers(0, 50, (n, 2)).astype(float)
        return np.concatenate([xy, xy + rng.integers(2, 30, (n, 2))], axis=1)

    n_img = 4
    gt = [boxes(int(k)) for k in rng.integers(0, 12, n_img)]
    gt_labels = [rng.integers(1, 3, len(g)) for g in gt]
    difficult = [rng.random(len(g)) < 0.2 for g in gt]
    det = [boxes(int(k)) for k in rng.integers(0, 40, n_img)]
    det_labels = [rng.integers(1, 3, len(d)) for d in det]
    scores = [np.round(rng.random(len(d)), 1) for d in det]  # ties
    args = (det, det_labels, scores, gt, gt_labels, difficult)
    once = ap.eval_detection_voc(*args, num_classes=2)
    for pairs in (1, 3, 17):
        monkeypatch.setattr(best_match, "MAX_PAIRS", pairs)
        blocks = ap.eval_detection_voc(*args, num_classes=2)
        np.testing.assert_array_equal(blocks["ap"], once["ap"])
        for a, b in zip(blocks["precision"] + blocks["recall"], once["precision"] + once["recall"]):
            np.testing.assert_array_equal(a, b)
    assert np.isfinite(once["ap"]).all() and once["map"] > 0
