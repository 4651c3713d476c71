"""R-CNN's per-class linear SVMs with hard-negative mining (Girshick et al. 2014, §2.3, appendix B).

As ``rcnn_train.m`` of the released code:

- positives: the ground-truth boxes of the class only; negatives: regions whose IoU with every
  ground-truth box of the class is < 0.3 (proposals and the other classes' ground-truth boxes);
- solver: liblinear's L2-regularised L1-loss (hinge) SVM (``-s 3``) — scikit-learn's
  ``LinearSVC(loss="hinge", dual=True)`` wraps the same library — with ``C = 0.001``, positive
  loss weight 2 (``-w1 2``, here ``class_weight``), a bias feature of value 10 (``-B 10``, here
  ``intercept_scaling=10``; the bias is regularised as ``(b / 10)²``) and liblinear's default
  tolerance 0.1;
- features scaled so that their mean norm is 20 (``rcnn_scale_features.m``), the scale measured on
  the training features and stored with the model;
- hard-negative mining (:func:`mine_hard_negatives`), one pass over the images: the first image's
  negatives start the cache and the first SVM is trained on them; every later image adds its
  negatives that the current SVM scores above −1.0001 (inside the margin); the SVM is retrained
  when more than 2000 negatives were added since the last training, and after the last image;
  after each training, negatives scoring below −1.2 (easy) leave the cache.

Shape shorthand: P = positives, N = negatives, D = feature width.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

__all__ = ["MiningResult", "train_linear_svm", "mine_hard_negatives", "svm_objective"]

# R-CNN's settings (C, positive weight, bias feature, cache limits) are stated once, with their
# source, in ``visiontasks/detection/settings.py`` (``FitSettings``); the stages pass them here.


def train_linear_svm(x_pos: np.ndarray, x_neg: np.ndarray, C: float = 1e-3, pos_weight: float = 2.0,
                     bias_mult: float = 10.0, tol: float = 0.1, max_iter: int = 1000,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """One linear SVM with liblinear (scikit-learn ``LinearSVC``), R-CNN's objective.

    Minimises ``½‖w‖² + ½(b / bias_mult)² + C·pos_weight·Σ_pos max(0, 1 − z) + C·Σ_neg max(0, 1 + z)``
    with ``z = x·w + b``.

    Args:
        x_pos: (P, D) positive features (already scaled).
        x_neg: (N, D) negative features.
        C: hinge-loss weight.
        pos_weight: extra weight of the positives' loss.
        bias_mult: value of the appended bias feature (liblinear's ``-B``).
        tol: liblinear's stopping tolerance (its default 0.1 for this solver, as R-CNN ran it).
        max_iter: liblinear's iteration cap.
        seed: liblinear's random order of the dual coordinates.

    Returns:
        ``(w (D,) float32, b)``.

    Raises:
        ValueError: no positives or no negatives.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    if len(x_pos) == 0 or len(x_neg) == 0:
        raise ValueError(f"an SVM needs positives and negatives, got {len(x_pos)} and {len(x_neg)}")
    x = np.concatenate((np.asarray(x_pos, dtype=np.float64), np.asarray(x_neg, dtype=np.float64)))
    y = np.concatenate((np.ones(len(x_pos)), -np.ones(len(x_neg))))
    svm = LinearSVC(C=C, loss="hinge", dual=True, penalty="l2", fit_intercept=True, intercept_scaling=bias_mult,
                    class_weight={1: pos_weight, -1: 1.0}, tol=tol, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the loose tolerance is R-CNN's choice
        svm.fit(x, y)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])


def svm_objective(w: np.ndarray, b: float, x_pos: np.ndarray, x_neg: np.ndarray, C: float, pos_weight: float,
                  bias_mult: float) -> dict[str, float]:
    """R-CNN's printed objective: ``{"pos", "neg", "reg", "total"}`` (see :func:`train_linear_svm`)."""
    z_pos = x_pos @ w + b
    z_neg = x_neg @ w + b
    pos = float(C * pos_weight * np.maximum(0, 1 - z_pos).sum())
    neg = float(C * np.maximum(0, 1 + z_neg).sum())
    reg = float(0.5 * w @ w + 0.5 * (b / bias_mult) ** 2)
    return {"pos": pos, "neg": neg, "reg": reg, "total": pos + neg + reg}


@dataclass
class MiningResult:
    """What :func:`mine_hard_negatives` found.

    Attributes:
        weight: (D,) the final SVM's weights.
        bias: its bias.
        num_pos: positives used.
        num_neg: negatives in the cache at the end (after the last eviction).
        retrains: how many times the SVM was trained.
        added: negatives added to the cache over the pass (the first image's included).
        history: per training ``{"image", "cache", "evicted", "objective"}``.
    """

    weight: np.ndarray
    bias: float
    num_pos: int
    num_neg: int
    retrains: int
    added: int
    history: list[dict] = field(default_factory=list)


def mine_hard_negatives(x_pos: np.ndarray, negatives: Iterable[np.ndarray],
                        fit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, float]],
                        retrain_limit: int = 2000, hard_thresh: float = -1.0001, evict_thresh: float = -1.2,
                        objective: Callable[[np.ndarray, float, np.ndarray, np.ndarray], dict] | None = None
                        ) -> MiningResult:
    """Hard-negative mining in one pass, as ``rcnn_train.m``.

    Args:
        x_pos: (P, D) positive features.
        negatives: per image, its (N_i, D) candidate negatives (already restricted to IoU < 0.3
            with the class and scaled), in image order; read lazily, one image at a time.
        fit: ``fit(x_pos, x_neg) -> (w, b)`` (e.g. :func:`train_linear_svm` with R-CNN's settings).
        retrain_limit: retrain once more than this many negatives were added since the last training.
        hard_thresh: a negative is hard (added) when its score is above this (−1.0001: inside the margin).
        evict_thresh: after a training, cached negatives scoring below this are dropped (easy).
        objective: optional ``objective(w, b, x_pos, x_neg) -> dict`` logged in ``history``.

    Returns:
        The final SVM and statistics (:class:`MiningResult`).

    Raises:
        ValueError: no positives, or no image had a negative.
    """
    x_pos = np.asarray(x_pos, dtype=np.float32)
    if len(x_pos) == 0:
        raise ValueError("hard-negative mining needs positives, got none")
    dim = x_pos.shape[1]
    cache = np.zeros((0, dim), dtype=np.float32)
    w = np.zeros(dim, dtype=np.float32)
    b = 0.0
    first, trained, num_added, added, retrains = True, False, 0, 0, 0
    history: list[dict] = []
    it = iter(negatives)
    nxt = next(it, None)
    index = 0
    while nxt is not None:
        x = np.asarray(nxt, dtype=np.float32).reshape(-1, dim)
        nxt = next(it, None)
        last = nxt is None
        if len(x):
            if not first:
                x = x[x @ w + b > hard_thresh]
            cache = np.concatenate((cache, x))
            num_added += len(x)
            added += len(x)
        if (first or num_added > retrain_limit or last) and len(cache):
            w, b = fit(x_pos, cache)
            w = np.asarray(w, dtype=np.float32)
            trained, num_added, retrains = True, 0, retrains + 1
            entry = {"image": index, "cache": int(len(cache))}
            if objective is not None:
                entry["objective"] = objective(w, b, x_pos, cache)
            keep = cache @ w + b >= evict_thresh
            entry["evicted"] = int((~keep).sum())
            cache = cache[keep]
            history.append(entry)
        first = False
        index += 1
    if not trained:
        raise ValueError("hard-negative mining found no negatives in any image")
    return MiningResult(weight=w, bias=float(b), num_pos=len(x_pos), num_neg=len(cache), retrains=retrains,
                        added=added, history=history)
