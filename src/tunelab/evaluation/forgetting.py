"""The forgetting meter's arithmetic: how far a fine-tune moved the weights and the representations of the
pre-trained model, and how much of what it knew survives. Pure numpy on arrays the caller extracted, so
each number can be checked by hand (tests/unit/evaluation/test_forgetting.py).

- `relative_drift`: ||theta - theta0|| / ||theta0|| over a group of parameters, from per-tensor sums.
- `linear_cka`: linear centred kernel alignment (Kornblith et al., 2019) between two feature matrices of
  the same examples; 1 for features equal up to rotation and isotropic scale, about 0 for unrelated ones.
- `knn_overlap`: the mean share of each example's k nearest neighbours (cosine) kept between two embeddings.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["relative_drift", "linear_cka", "knn_overlap"]


def relative_drift(delta_sq: float, base_sq: float) -> float:
    """||theta - theta0|| / ||theta0|| from the summed squares of the change and of theta0 (0 for an empty
    group: nothing there could move)."""
    return float(math.sqrt(delta_sq) / math.sqrt(base_sq)) if base_sq > 0 else 0.0


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of `x` `(N, D1)` and `y` `(N, D2)`, rows the same N examples:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), with Xc, Yc the column-centred features.
    Computed in float64 through the (N, N) Gram matrices when N is smaller than the widths."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: both feature sets need the same examples, got {x.shape[0]} and {y.shape[0]} rows")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T                               # (N, N)
        cross, norm_x, norm_y = (kx * ky).sum(), np.linalg.norm(kx), np.linalg.norm(ky)
    else:
        cross = np.linalg.norm(y.T @ x) ** 2
        norm_x, norm_y = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        return 1.0 if norm_x == norm_y else 0.0                 # constant features: equal only to constants
    return float(cross / (norm_x * norm_y))


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Indices `(N, k)` of each row's k most cosine-similar other rows (ties broken by index)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms == 0, 1.0, norms)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def knn_overlap(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean over examples of |kNN_x(i) & kNN_y(i)| / k, neighbours by cosine similarity among the N rows
    (k is cut to N - 1 on small sets). 1: the embedding keeps every neighbourhood."""
    n = np.asarray(x).shape[0]
    if n != np.asarray(y).shape[0]:
        raise ValueError(f"knn_overlap: both embeddings need the same examples, got {n} and {np.asarray(y).shape[0]} rows")
    k = min(k, n - 1)
    if k < 1:
        return 1.0
    a, b = _neighbours(x, k), _neighbours(y, k)
    shared = [len(set(ra.tolist()) & set(rb.tolist())) for ra, rb in zip(a, b)]
    return float(np.mean(shared) / k)
