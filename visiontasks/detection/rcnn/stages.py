"""R-CNN's training stages after fine-tuning (the table), and the SVM and box-regression fitting stages.

``RCNN.training_stages()`` is ``[SGDStage("finetune", evaluate=False), FeatureCacheStage(),
SVMStage(), BoxRegressionStage()]`` (``visiontasks/engine/stages.py`` runs them in order and
skips finished ones on ``--resume``). Artifacts, all inside the run directory:

==============  ====================================================  ==============================
stage           writes                                                resumes
==============  ====================================================  ==============================
``finetune``    ``checkpoint_last.pt`` (softmax R-CNN), log.csv …      from the checkpoint (Trainer)
``features``    ``features/manifest.json``, ``features/<id>.npz``     per image (files present = done)
``svm``         ``svm/<label>-<class>.npz`` (w, b, scale, statistics)  per class
``bbox_reg``    ``bbox_reg/<label>-<class>.npz`` (W, b, scale, n)      per class
==============  ====================================================  ==============================

The ``svm`` and ``bbox_reg`` stages each end by installing the fitted predictor
(:class:`~visiontasks.detection.rcnn.predictor.SVMBoxPredictor`, built from the files in
``svm/`` and — when present — ``bbox_reg/``) in the model and writing it into
``checkpoint_last.pt`` atomically, keeping the checkpoint's other keys; so after a run,
``visiontasks.load_model(run)``, ``tools/eval.py det --checkpoint`` and ``tools/predict.py`` use
the SVM detector. A fresh (not ``--resume``) run deletes a stage's folder before the stage starts;
a class file written with other settings (``svm_C`` …) is fitted again.

The ``features`` stage (:class:`~visiontasks.detection.rcnn.feature_cache.FeatureCacheStage`, its
own file ``feature_cache.py``; its split over ``torchrun`` ranks or a job array is described
there) caches fc7 and pool5 of every training proposal and ground-truth box; this file holds the
fitting stages and :func:`install_fitted_predictor`. The fitting stages read the
cache one image at a time: the SVM stage makes one pass per
class over fc7 (R-CNN's ``rcnn_train.m`` makes one pass for all classes; a pass per class bounds
memory to one class's negative cache and makes each class resumable), the box-regression stage
one pass over the images holding the class's examples, summing ``AᵀA`` (``(F + 1)²`` numbers).

Under DDP (``torchrun``) the fitting stages run on rank 0 only (the other ranks keep the
fine-tuned softmax; only rank 0 evaluates and writes).

Shape shorthand: C = object classes, D = fc7 width, F = pool5 width.
"""
from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from visiontasks.detection.rcnn.bbox_reg import RidgeAccumulator, regression_targets
# FeatureCacheStage: re-exported, model.py's training_stages() imports the stages from here
from visiontasks.detection.rcnn.feature_cache import FeatureCacheStage, fresh_folder, kept_message
from visiontasks.detection.rcnn.features import feature_mean_norm, read_features_manifest, read_image_features
from visiontasks.detection.rcnn.svm import mine_hard_negatives, svm_objective, train_linear_svm
from visiontasks.engine.distributed import is_main_process
from visiontasks.engine.preempt import polled
from visiontasks.engine.stages import Stage
from visiontasks.errors import InputError

__all__ = ["FeatureCacheStage", "SVMStage", "BoxRegressionStage", "install_fitted_predictor", "class_file",
           "NO_POSITIVES_BIAS"]

#: Bias of the SVM of a class without training positives: margin −20, never reported.
NO_POSITIVES_BIAS = -20.0
CHECKPOINT = "checkpoint_last.pt"


def class_file(folder: Path, label: int, name: str) -> Path:
    """``folder/<label:02d>-<name>.npz`` (characters other than letters, digits, ``-``/``_`` → ``_``)."""
    return Path(folder) / f"{label:02d}-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.npz"


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    from visiontasks.io import atomic_write

    with atomic_write(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"unreadable ({type(exc).__name__}: {exc}); delete it and resume") from None


def _settings_match(path: Path, settings: dict) -> bool:
    if not path.is_file():
        return False
    stored = _load_npz(path).get("settings")
    return stored is not None and json.loads(str(stored)) == settings


class _PerClassFitStage(Stage):
    """The scaffold the SVM and box-regression stages share (R-CNN fits both per class on the
    cached features scaled to ``feat_norm``, ``rcnn_train.m`` / ``rcnn_train_bbox_regressor.m``).

    ``run``: on rank 0, read the cache's manifest, measure the mean norm of the cached
    ``feature``, fit every class whose file ``<folder>/<label>-<class>.npz`` is missing or was
    written with other settings (the model's ``fit_params`` named in ``setting_keys``, plus the
    mean norm), save each class's weight, bias, scale, settings and statistics, then install the
    fitted predictor. A subclass sets ``folders`` (one), ``feature`` and ``setting_keys`` and
    implements :meth:`prepare`.
    """

    feature: str = ""
    setting_keys: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, feats: Path, manifest: dict[str, Any], todo: list[int], p: dict[str, Any], scale: float,
                kept: Callable[[], str] = str) -> Callable[[int, str], tuple[np.ndarray, Any, dict[str, Any]]]:
        """Reads what the classes ``todo`` need and returns ``fit(label, name) -> (weight, bias, stats)``;
        its per-image loops stop between images after SIGTERM/SIGINT (``polled(..., kept)``)."""
        raise NotImplementedError

    def run(self, ctx) -> dict[str, Any]:
        if not is_main_process():
            return {}
        p = ctx.model.fit_params
        feats = Path(ctx.out_dir) / "features"
        folder = Path(ctx.out_dir) / self.folders[0]
        fresh_folder(folder, ctx.resume)
        manifest = read_features_manifest(feats)
        ids, classes = manifest["image_ids"], manifest["classes"]
        mean_norm = feature_mean_norm(feats, ids, self.feature)
        scale = p["feat_norm"] / mean_norm
        settings = {**{k: p[k] for k in self.setting_keys}, "mean_norm": mean_norm}
        todo = [c for c in range(1, len(classes) + 1)
                if not _settings_match(class_file(folder, c, classes[c - 1]), settings)]
        summary: dict[str, Any] = {f"{self.feature}_mean_norm": mean_norm, "fitted": [classes[c - 1] for c in todo]}
        if todo:
            kept = kept_message(folder, f"{self.name} (classes)", len(classes))
            fit = self.prepare(feats, manifest, todo, p, scale, kept)
            for c in polled(todo, kept):
                name = classes[c - 1]
                weight, bias, stats = fit(c, name)
                _save_npz(class_file(folder, c, name), {"weight": weight, "bias": bias, "scale": scale,
                                                        "settings": json.dumps(settings), "stats": json.dumps(stats)})
                summary[name] = stats
        install_fitted_predictor(ctx)
        return summary


class SVMStage(_PerClassFitStage):
    """One linear SVM per class on fc7 with hard-negative mining (see ``svm.py``): positives the
    class's ground-truth boxes, negatives every row with IoU < ``neg_iou_thresh`` (0.3) with each
    of the class's boxes (:meth:`_negatives`)."""

    folders = ("svm",)
    feature = "fc7"
    setting_keys = ("svm_C", "svm_pos_weight", "svm_bias_mult", "feat_norm", "neg_iou_thresh", "svm_retrain_limit",
                    "svm_hard_thresh", "svm_evict_thresh")

    def __init__(self, name: str = "svm") -> None:
        super().__init__(name)

    def prepare(self, feats: Path, manifest: dict[str, Any], todo: list[int], p: dict[str, Any], scale: float,
                kept: Callable[[], str] = str) -> Callable[[int, str], tuple[np.ndarray, Any, dict[str, Any]]]:
        ids = manifest["image_ids"]
        positives = self._positives(feats, ids, todo, kept)
        train = partial(train_linear_svm, C=p["svm_C"], pos_weight=p["svm_pos_weight"], bias_mult=p["svm_bias_mult"])
        objective = partial(svm_objective, C=p["svm_C"], pos_weight=p["svm_pos_weight"], bias_mult=p["svm_bias_mult"])

        def fit(c: int, name: str) -> tuple[np.ndarray, Any, dict[str, Any]]:
            x_pos = positives[c] * np.float32(scale)
            stats: dict[str, Any] = {"num_pos": len(x_pos)}
            if len(x_pos) == 0:
                stats.update(num_neg=0, retrains=0, added=0, note="no positives: never reported")
                return np.zeros(manifest["fc7_dim"], np.float32), NO_POSITIVES_BIAS, stats
            negs = (self._negatives(feats, image_id, c, p["neg_iou_thresh"], scale) for image_id in polled(ids, kept))
            res = mine_hard_negatives(x_pos, tqdm(negs, total=len(ids), desc=f"svm {name}", leave=False), train,
                                      retrain_limit=p["svm_retrain_limit"], hard_thresh=p["svm_hard_thresh"],
                                      evict_thresh=p["svm_evict_thresh"], objective=objective)
            stats.update(num_neg=res.num_neg, retrains=res.retrains, added=res.added,
                         objective=res.history[-1].get("objective", {}).get("total"))
            return res.weight, res.bias, stats

        return fit

    @staticmethod
    def _positives(feats: Path, ids: list[str], labels: list[int], kept: Callable[[], str] = str
                   ) -> dict[int, np.ndarray]:
        found: dict[int, list[np.ndarray]] = {c: [] for c in labels}
        dim = None
        for image_id in polled(tqdm(ids, desc="svm positives", leave=False), kept):
            d = read_image_features(feats, image_id, ("labels", "fc7"))
            dim = d["fc7"].shape[1]
            for c in labels:
                sel = d["labels"] == c
                if sel.any():
                    found[c].append(d["fc7"][sel].astype(np.float32))
        return {c: np.concatenate(v) if v else np.zeros((0, dim or 0), np.float32) for c, v in found.items()}

    @staticmethod
    def _negatives(feats: Path, image_id: str, label: int, thresh: float, scale: float) -> np.ndarray:
        # R-CNN (rcnn_train.m): every row whose IoU with the class's ground truth is < 0.3 — the
        # proposals and the other classes' ground-truth boxes.
        d = read_image_features(feats, image_id, ("overlap", "fc7"))
        return d["fc7"][d["overlap"][:, label - 1] < thresh].astype(np.float32) * np.float32(scale)


class BoxRegressionStage(_PerClassFitStage):
    """Class-specific ridge regressors on pool5 (see ``bbox_reg.py``), on the rows with IoU >
    ``bbox_iou_thresh`` with their best ground-truth box (:meth:`_examples`)."""

    folders = ("bbox_reg",)
    feature = "pool5"
    setting_keys = ("bbox_lambda", "bbox_iou_thresh", "feat_norm")

    def __init__(self, name: str = "bbox_reg") -> None:
        super().__init__(name)

    def prepare(self, feats: Path, manifest: dict[str, Any], todo: list[int], p: dict[str, Any], scale: float,
                kept: Callable[[], str] = str) -> Callable[[int, str], tuple[np.ndarray, Any, dict[str, Any]]]:
        ids = manifest["image_ids"]
        examples = self._examples(feats, ids, todo, p["bbox_iou_thresh"], kept)

        def fit(c: int, name: str) -> tuple[np.ndarray, Any, dict[str, Any]]:
            acc = RidgeAccumulator(manifest["pool5_dim"])
            for i, rows, targets in polled(tqdm(examples[c], desc=f"bbox_reg {name}", leave=False), kept):
                pool5 = read_image_features(feats, ids[i], ("pool5",))["pool5"]
                acc.add(pool5[rows].astype(np.float32) * np.float32(scale), targets)
            weight, bias = acc.solve(p["bbox_lambda"])
            return weight, bias, {"examples": acc.count}

        return fit

    @staticmethod
    def _examples(feats: Path, ids: list[str], labels: list[int], thresh: float, kept: Callable[[], str] = str
                  ) -> dict[int, list[tuple[int, np.ndarray, np.ndarray]]]:
        """Per class: (image index, rows, (n, 4) targets) of the rows with IoU > ``thresh`` with
        their best ground-truth box (whose class they take), as ``rcnn_train_bbox_regressor.m``."""
        out: dict[int, list] = {c: [] for c in labels}
        for i, image_id in polled(enumerate(tqdm(ids, desc="bbox_reg examples", leave=False)), kept):
            d = read_image_features(feats, image_id, ("boxes", "labels", "max_iou", "best_gt"))
            rows = np.flatnonzero((d["max_iou"] > thresh) & (d["best_gt"] >= 0))
            if not len(rows):
                continue
            gt_rows = d["best_gt"][rows]
            cls = d["labels"][gt_rows]
            targets = regression_targets(d["boxes"][rows], d["boxes"][gt_rows])
            for c in labels:
                sel = cls == c
                if sel.any():
                    out[c].append((i, rows[sel], targets[sel]))
        return out


def install_fitted_predictor(ctx) -> Path:
    """Builds the SVM/box-regression predictor from ``svm/`` (required) and ``bbox_reg/`` (when
    complete), installs it in ``ctx.model`` and writes the model into ``checkpoint_last.pt``
    atomically, keeping the checkpoint's other keys.

    Raises:
        InputError: a class's SVM file is missing (naming it).
    """
    from visiontasks.engine.checkpoint import load_checkpoint, save_checkpoint

    out = Path(ctx.out_dir)
    classes = read_features_manifest(out / "features")["classes"]
    head = ctx.model.roi_head
    predictor = head.make_svm_predictor()
    for c, name in enumerate(classes, 1):
        path = class_file(out / "svm", c, name)
        if not path.is_file():
            raise InputError(path, f"SVM of class {name!r} not found (run the 'svm' stage)")
        d = _load_npz(path)
        predictor.set_svm(c, torch.from_numpy(d["weight"]), float(d["bias"]), float(d["scale"]))
    reg = [class_file(out / "bbox_reg", c, name) for c, name in enumerate(classes, 1)]
    if all(path.is_file() for path in reg):
        for c, path in enumerate(reg, 1):
            d = _load_npz(path)
            predictor.set_box_regressor(c, torch.from_numpy(d["weight"]), torch.from_numpy(d["bias"]),
                                        float(d["scale"]))
    head.set_predictor(predictor)
    ckpt = out / CHECKPOINT
    state = load_checkpoint(ckpt) if ckpt.is_file() else {
        "config": ctx.cfg, "meta": {"classes": list(classes), "task": "detection"}}
    state["model"] = ctx.model.state_dict()
    save_checkpoint(ckpt, state)
    return ckpt
