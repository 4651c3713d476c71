"""VOC comp4 results files: round trip, the 1-based shift, and each kind of bad file (message names the file)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visiontasks.errors import InputError
from visiontasks.evaluation import read_voc_results, write_voc_results

CLASSES = ("cat", "dog", "bird")
IDS = ["000001", "000002", "000003"]


def _predictions():
    return [
        {"boxes": torch.tensor([[0.0, 1.5, 10.0, 20.25], [3.0, 4.0, 5.0, 6.0]]), "labels": torch.tensor([2, 1]),
         "scores": torch.tensor([0.75, 0.5])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)},
        (np.array([[7.0, 8.0, 9.0, 10.0]]), np.array([2]), np.array([0.125])),
    ]


def test_write_format_is_one_based(tmp_path: Path) -> None:
    paths = write_voc_results(tmp_path, "test", CLASSES, IDS, _predictions())
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt", "comp4_det_test_bird.txt"]
    assert (tmp_path / "comp4_det_test_cat.txt").read_text() == "000001 0.5 4.0 5.0 6.0 7.0\n"
    assert (tmp_path / "comp4_det_test_dog.txt").read_text().splitlines() == [
        "000001 0.75 1.0 2.5 11.0 21.25", "000003 0.125 8.0 9.0 10.0 11.0"]
    assert (tmp_path / "comp4_det_test_bird.txt").read_text() == ""
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_round_trip(tmp_path: Path) -> None:
    write_voc_results(tmp_path, "test", CLASSES, IDS, _predictions())
    boxes, labels, scores = read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert [len(b) for b in boxes] == [2, 0, 1]
    # image 1: rows in class order (cat, then dog)
    np.testing.assert_array_equal(labels[0], [1, 2])
    np.testing.assert_allclose(boxes[0], [[3, 4, 5, 6], [0, 1.5, 10, 20.25]])
    np.testing.assert_allclose(scores[0], [0.5, 0.75])
    np.testing.assert_allclose(boxes[2], [[7, 8, 9, 10]])
    assert boxes[1].shape == (0, 4) and labels[1].dtype == np.int64


def test_other_splits_are_left_alone(tmp_path: Path) -> None:
    write_voc_results(tmp_path, "test", CLASSES, IDS, _predictions())
    (tmp_path / "comp4_det_val_unicorn.txt").write_text("garbage\n")
    boxes, _, _ = read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert [len(b) for b in boxes] == [2, 0, 1]


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    write_voc_results(tmp_path, "test", CLASSES, IDS, _predictions())
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, problem", [
    ("000001 0.5 1 2 3\n", "line 1: expected"),
    ("000001 0.5 1 2 3 4\n000002 high 1 2 3 4\n", "line 2: score and coordinates must be numbers"),
    ("000001 nan 1 2 3 4\n", "line 1: non-finite"),
    ("\n000001 0.5 1 2 3 4\n999999 0.5 1 2 3 4\n", "line 3: image id '999999' is not in split 'test'"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = _bad(tmp_path, "comp4_det_test_dog.txt", text)
    with pytest.raises(InputError, match=problem) as err:
        read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert err.value.path == str(path)
    assert str(err.value).startswith(str(path))


def test_unknown_class_file(tmp_path: Path) -> None:
    path = _bad(tmp_path, "comp4_det_test_unicorn.txt", "000001 0.5 1 2 3 4\n")
    with pytest.raises(InputError, match="class 'unicorn' is not one of") as err:
        read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert err.value.path == str(path)


def test_two_files_for_one_class(tmp_path: Path) -> None:
    path = _bad(tmp_path, "comp3_det_test_dog.txt", "")
    with pytest.raises(InputError, match="second results file") as err:
        read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert err.value.path in (str(path), str(tmp_path / "comp4_det_test_dog.txt"))


def test_binary_file(tmp_path: Path) -> None:
    path = _bad(tmp_path, "comp4_det_test_cat.txt", "")
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="not a UTF-8 text file") as err:
        read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert err.value.path == str(path)


def test_no_results_files_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no results files") as err:
        read_voc_results(tmp_path, "test", CLASSES, IDS)
    assert err.value.path == str(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_voc_results(tmp_path / "missing", "test", CLASSES, IDS)


def test_write_rejects_bad_predictions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="labels outside 1..3"):
        write_voc_results(tmp_path, "test", CLASSES, IDS[:1], [(np.zeros((1, 4)), np.array([4]), np.array([1.0]))])
    with pytest.raises(ValueError, match="image ids"):
        write_voc_results(tmp_path, "test", CLASSES, IDS, _predictions()[:2])


def test_real_ground_truth_through_results_files_scores_one(coco128_root: Path, tmp_path: Path) -> None:
    """Real VOC-layout annotations written as comp4 files, read back and scored: every class AP 1 (or NaN)."""
    from visiontasks.data import VOCDetection
    from visiontasks.evaluation import eval_detection_voc

    dataset = VOCDetection(coco128_root, "test")
    gts = [dataset.get_annotation(i) for i in range(len(dataset))]
    preds = [{"boxes": g["boxes"], "labels": g["labels"], "scores": torch.linspace(1, 0.5, len(g["labels"]))}
             for g in gts]
    write_voc_results(tmp_path, "test", dataset.classes, dataset.ids, preds)
    boxes, labels, scores = read_voc_results(tmp_path, "test", dataset.classes, dataset.ids)
    res = eval_detection_voc(boxes, labels, scores, [g["boxes"].numpy() for g in gts],
                             [g["labels"].numpy() for g in gts], [g["difficult"].numpy() for g in gts],
                             num_classes=len(dataset.classes), metric="voc12")
    scored = ~np.isnan(res["ap"])
    assert scored.sum() > 5
    np.testing.assert_allclose(res["ap"][scored], 1.0, atol=1e-12)
