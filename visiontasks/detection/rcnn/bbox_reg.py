"""R-CNN's class-specific bounding-box regression (Girshick et al. 2014, appendix C).

For a proposal P and its ground-truth box G, the targets are the unnormalised

    t_x = (G_x − P_x) / P_w      t_w = log(G_w / P_w)
    t_y = (G_y − P_y) / P_h      t_h = log(G_h / P_h)

(centres and sizes; ``BoxCoder`` with weights (1, 1, 1, 1), :func:`regression_targets`). Each
class has a ridge regressor from pool5 (scaled to mean norm 20 like the SVM features) to the four
targets, trained on the proposals (and ground-truth boxes) whose IoU with their best ground-truth
box is > 0.6, assigned to that box's class, with λ = 1000.

As ``rcnn_train_bbox_regressor.m``: a constant-1 feature gives the bias and *is* regularised
(``(AᵀA + λI)⁻¹ AᵀY`` over the augmented ``A = [X, 1]``), and the targets are centred and
whitened before the fit (mean ``μ``, covariance ``S = V diag(d) Vᵀ``, ``T = V diag(1/√(d + 0.001))
Vᵀ``) and mapped back after prediction (``ŷ = (Aβ) T⁻¹ + μ``). :meth:`RidgeAccumulator.solve`
folds ``T⁻¹`` and ``μ`` into the returned weights, so the stored regressor maps scaled pool5 to
raw deltas directly: ``ŷ = x·Wᵀ + b``.

The fit streams: :class:`RidgeAccumulator` sums ``AᵀA`` and ``AᵀY`` (float64) block by block, so
memory is ``(F + 1)²`` numbers per class plus one block of examples, not all the examples.

Shape shorthand: N = examples, F = feature width (pool5: C·P²).
"""
from __future__ import annotations

import numpy as np
import torch

from visiontasks.detection.box_coder import BoxCoder

__all__ = ["regression_targets", "ridge_regression", "RidgeAccumulator"]

_WHITEN_EPS = 0.001


def regression_targets(proposals: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> np.ndarray:
    """Appendix C's (t_x, t_y, t_w, t_h) that move each proposal onto its paired ground-truth box.

    Args:
        proposals: (N, 4) xyxy.
        gt: (N, 4) xyxy, row by row.

    Returns:
        (N, 4) float32.
    """
    p = torch.as_tensor(np.asarray(proposals, dtype=np.float32))
    g = torch.as_tensor(np.asarray(gt, dtype=np.float32))
    return BoxCoder((1.0, 1.0, 1.0, 1.0)).encode(g, p).numpy().astype(np.float32)


def _solve_spd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve

    return solve(matrix, rhs, assume_a="pos")


def ridge_regression(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``argmin_β ‖Aβ − y‖² + λ‖β‖²`` with ``A = [x, 1]`` (the bias regularised, as R-CNN).

    Args:
        x: (N, F) features.
        y: (N, T) targets.
        lam: λ.

    Returns:
        ``(w (T, F), b (T,))`` float64, so that ``ŷ = x·wᵀ + b``.
    """
    a = np.concatenate((np.asarray(x, dtype=np.float64), np.ones((len(x), 1))), axis=1)
    beta = _solve_spd(a.T @ a + lam * np.eye(a.shape[1]), a.T @ np.asarray(y, dtype=np.float64))
    return beta[:-1].T, beta[-1]


class RidgeAccumulator:
    """Streams examples into R-CNN's whitened ridge regression (see the module docstring).

    Args:
        dim: F, the feature width.
        num_targets: T (4 for boxes).
    """

    def __init__(self, dim: int, num_targets: int = 4, buffer_rows: int = 4096) -> None:
        self.dim = int(dim)
        self.gram = np.zeros((self.dim + 1, self.dim + 1))  # AᵀA, A = [x, 1]
        self.aty = np.zeros((self.dim + 1, num_targets))   # AᵀY
        self.yty = np.zeros((num_targets, num_targets))    # YᵀY
        self.count = 0
        self.buffer_rows = int(buffer_rows)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Adds (n, F) features and their (n, T) targets (summed in blocks of ``buffer_rows`` rows:
        one (F + 1)² update per block, not per call)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.dim)
        y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        if not len(x):
            return
        self._pending.append((x, y))
        self._pending_rows += len(x)
        self.count += len(x)
        if self._pending_rows >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = np.concatenate([p[0] for p in self._pending]).astype(np.float64)
        y = np.concatenate([p[1] for p in self._pending])
        self._pending, self._pending_rows = [], 0
        ones = np.ones(len(x))
        self.gram[:-1, :-1] += x.T @ x
        col = x.T @ ones
        self.gram[:-1, -1] += col
        self.gram[-1, :-1] += col
        self.gram[-1, -1] += len(x)
        self.aty[:-1] += x.T @ y
        self.aty[-1] += y.sum(axis=0)
        self.yty += y.T @ y

    def solve(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """The regressor with R-CNN's target whitening folded in.

        Returns:
            ``(w (T, F), b (T,))`` float32 with ``ŷ = x·wᵀ + b`` in raw target units; zeros when
            no example was added (the identity move).
        """
        self._flush()
        t = self.aty.shape[1]
        if self.count == 0:
            return np.zeros((t, self.dim), np.float32), np.zeros(t, np.float32)
        n = float(self.count)
        mu = self.aty[-1] / n                               # mean target (the bias column of A is 1)
        cov = self.yty / n - np.outer(mu, mu)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.clip(evals, 0.0, None)
        whiten = evecs @ np.diag(1.0 / np.sqrt(evals + _WHITEN_EPS)) @ evecs.T
        unwhiten = evecs @ np.diag(np.sqrt(evals + _WHITEN_EPS)) @ evecs.T
        rhs = (self.aty - np.outer(self.gram[:, -1], mu)) @ whiten  # Aᵀ (Y − 1μᵀ) T
        beta = _solve_spd(self.gram + lam * np.eye(self.dim + 1), rhs)
        folded = beta @ unwhiten                           # (F + 1, T)
        return folded[:-1].T.astype(np.float32), (folded[-1] + mu).astype(np.float32)
