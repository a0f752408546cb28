"""How well frozen features suit a labelled task, without training the backbone: the scores `recommend` ranks
backbones and depths by.

- LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021):
  the log marginal likelihood (evidence) per example of a Bayesian linear model from the features to each
  one-hot target column, with the prior and noise precisions (alpha, beta) set by MacKay's fixed point,
  averaged over the columns. Higher is better; a task whose labels are a linear function of the features
  scores near its ceiling, random features near -1 per dimension of noise.
- H-score (Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
  ICIP 2019): tr(cov(f)^-1 cov(E[f | y])), the share of feature variance that separates the classes,
  computed with a shrunk covariance (Ibrahim et al., "Newer is not always better", ICLR 2023), since
  a few hundred examples of 384-dimensional features give a singular one.
- A ridge probe: k-fold out-of-fold predictions of a class-weighted least-squares linear classifier on the
  standardised features, its ridge penalty the one LogME's evidence chose (the caller scores them per fold). It estimates what a trained linear head
  reaches, which makes it the expected score of feature extraction.

Pure numpy, float64: the numbers are checked against hand-worked cases in tests/unit/evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["LogME", "logme", "logme_column", "h_score", "ridge_probe", "ProbeResult"]

_MAX_ITER = 100
_TOL = 1e-5


@dataclass(frozen=True)
class LogME:
    score: float          # mean evidence per example over the target columns
    penalty: float        # mean alpha / beta: the evidence-optimal ridge penalty on these features


def logme_column(features: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(evidence / n, alpha, beta) of one target column, by the fixed point of the paper's Algorithm 1 on
    the SVD of the features: gamma = sum(beta s_i^2 / (alpha + beta s_i^2)), alpha = gamma / |m|^2,
    beta = (n - gamma) / |F m - y|^2."""
    f = np.asarray(features, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return _fit_column(f.shape, u, s, np.asarray(y, dtype=np.float64))


def _fit_column(shape: tuple[int, int], u: np.ndarray, s: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """logme_column on the features' SVD, which every column of a task shares."""
    n, d = shape
    sigma = s ** 2
    z = u.T @ y                                   # y in the span of the features' left singular vectors
    outside = max(float(y @ y - z @ z), 0.0)      # the part of y no weight vector can reach
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_ITER):
        shrink = beta * sigma / (alpha + beta * sigma)
        gamma = float(shrink.sum())
        m2 = float(np.sum((beta * s * z / (alpha + beta * sigma)) ** 2))
        residual = float(np.sum((alpha * z / (alpha + beta * sigma)) ** 2)) + outside
        new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(residual, 1e-12)
        converged = abs(new_alpha / alpha - 1) < _TOL and abs(new_beta / beta - 1) < _TOL
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    return _evidence(n, d, sigma, z, outside, alpha, beta) / n, alpha, beta


def _evidence(n: int, d: int, sigma: np.ndarray, z: np.ndarray, outside: float, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) of the Bayesian linear model, from the SVD (the paper's eq. 2):
    n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log|A|."""
    s = np.sqrt(sigma)
    m2 = float(np.sum((beta * s * z / (alpha + beta * sigma)) ** 2))
    residual = float(np.sum((alpha * z / (alpha + beta * sigma)) ** 2)) + outside
    log_det = float(np.sum(np.log(alpha + beta * sigma))) + (d - len(sigma)) * math.log(alpha)
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * residual - alpha / 2 * m2 - log_det / 2)


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int) -> LogME:
    """LogME of class labels (0..num_classes-1): the mean over the one-hot columns.

    With fewer examples than twice the dimensions the features are first cut to their top n/2 principal
    components: with n <= d any target lies in the features' span, the noise precision grows without bound
    and the evidence with it, whatever the features are."""
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    if n < 2 * d:
        centred = features - features.mean(axis=0)
        _, _, vh = np.linalg.svd(centred, full_matrices=False)
        features = centred @ vh[: max(n // 2, 1)].T
    u, s, _ = np.linalg.svd(features, full_matrices=False)  # once: every class's column shares it
    results = [_fit_column(features.shape, u, s, (labels == c).astype(np.float64)) for c in range(num_classes)]
    return LogME(score=float(np.mean([r[0] for r in results])),
                 penalty=float(np.mean([r[1] / r[2] for r in results])))


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: float | None = None) -> float:
    """tr(cov_f^-1 cov_between), cov_f shrunk toward a scaled identity (Ledoit-Wolf's target; `shrinkage`
    None: min(1, d / n), so a sample smaller than the dimension still gets an invertible covariance)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    n, d = f.shape
    cov = f.T @ f / n
    lam = min(1.0, d / n) if shrinkage is None else shrinkage
    cov = (1 - lam) * cov + lam * (np.trace(cov) / d) * np.eye(d)
    means = np.zeros_like(f)
    for c in np.unique(labels):
        rows = labels == c
        means[rows] = f[rows].mean(axis=0)        # E[f | y] for every example of class c
    between = means.T @ means / n
    return float(np.trace(np.linalg.solve(cov, between)))


@dataclass(frozen=True)
class ProbeResult:
    predictions: np.ndarray   # (n,) out-of-fold class predictions
    fold_of: np.ndarray       # (n,) the fold each example was held out in
    labels: np.ndarray        # (n,) the true classes

    def per_fold(self, metric: Callable[[np.ndarray, np.ndarray], float]) -> list[float]:
        """`metric(y_true, y_pred)` on each fold's held-out examples: their spread is the estimate's."""
        return [metric(self.labels[self.fold_of == k], self.predictions[self.fold_of == k])
                for k in np.unique(self.fold_of)]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.per_fold(lambda y, p: float((y == p).mean()))))


def ridge_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, penalty: float | None = None,
                folds: int = 5, seed: int = 0) -> ProbeResult:
    """Stratified k-fold out-of-fold predictions of a ridge classifier (least squares onto one-hot targets,
    argmax) on features standardised by the training folds' statistics, each example weighted by the inverse
    of its class's frequency: unweighted least squares on a 6.5:1 set (sms-spam) predicted the majority class
    for every message (macro-F1 0.50 where a trained head reaches 0.95). `penalty` None: the one LogME's
    evidence picks on the standardised features (no inner search, so the probe costs one solve per fold)."""
    f = np.asarray(features, dtype=np.float64)
    if penalty is None:
        penalty = logme((f - f.mean(axis=0)) / (f.std(axis=0) + 1e-8), labels, num_classes).penalty
    fold_of = _stratified_folds(labels, folds, seed)
    predictions = np.zeros(len(labels), dtype=np.int64)
    for k in np.unique(fold_of):
        train, test = fold_of != k, fold_of == k
        predictions[test] = _balanced_ridge(f[train], labels[train], f[test], num_classes, penalty)
    return ProbeResult(predictions, fold_of, np.asarray(labels))


def _balanced_ridge(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, num_classes: int, penalty: float) -> np.ndarray:
    """Class predictions of `x_test` by weighted ridge regression onto the one-hot targets of (x, y)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    x, x_test = (x - mean) / std, (x_test - mean) / std
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = (len(y) / (np.count_nonzero(counts) * counts[y]))[:, None]   # (n, 1), mean 1
    centre = (weights * x).sum(axis=0) / weights.sum()
    targets = np.eye(num_classes)[y]
    prior = (weights * targets).sum(axis=0) / weights.sum()
    xc = x - centre
    gram = xc.T @ (weights * xc) + penalty * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (weights * (targets - prior)))
    return ((x_test - centre) @ coef + prior).argmax(axis=1)


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold index per example: each class's examples shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        fold_of[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)
    return fold_of
