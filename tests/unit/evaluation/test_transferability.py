"""The transferability scores against hand-worked cases and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.evaluation.transferability import _evidence, h_score, logme, logme_column, ridge_probe


def _gaussian_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, F F^T / alpha + I / beta): the marginal likelihood the SVD formula must equal."""
    n = len(y)
    cov = f @ f.T / alpha + np.eye(n) / beta
    _, log_det = np.linalg.slogdet(cov)
    return float(-0.5 * y @ np.linalg.solve(cov, y) - 0.5 * log_det - n / 2 * math.log(2 * math.pi))


def test_logme_evidence_is_the_gaussian_marginal_likelihood_at_its_maximum() -> None:
    rng = np.random.default_rng(0)
    n, d = 40, 5
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    score, alpha, beta = logme_column(f, y)
    assert score * n == pytest.approx(_gaussian_evidence(f, y, alpha, beta), rel=1e-8)
    for a, b in [(alpha * 1.2, beta), (alpha / 1.2, beta), (alpha, beta * 1.2), (alpha, beta / 1.2)]:
        assert _gaussian_evidence(f, y, a, b) < score * n  # the fixed point is the maximum over (alpha, beta)


def test_evidence_formula_matches_the_dense_one() -> None:
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(12, 4)), rng.normal(size=12)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    z = u.T @ y
    alpha, beta = 0.7, 2.5
    a = alpha * np.eye(4) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    dense = (12 / 2 * math.log(beta) + 4 / 2 * math.log(alpha) - 6 * math.log(2 * math.pi)
             - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2)
    assert _evidence(12, 4, s ** 2, z, float(y @ y - z @ z), alpha, beta) == pytest.approx(dense, rel=1e-10)


def test_logme_ranks_label_bearing_features_above_noise() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=300)
    informative = np.eye(3)[labels] @ rng.normal(size=(3, 16)) + 0.3 * rng.normal(size=(300, 16))
    noise = rng.normal(size=(300, 16))
    assert logme(informative, labels, 3).score > logme(noise, labels, 3).score + 0.3


def test_logme_stays_finite_and_ordered_with_fewer_examples_than_dimensions() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(2), 10)
    informative = np.eye(2)[labels] @ rng.normal(size=(2, 64)) + 0.3 * rng.normal(size=(20, 64))
    noise = rng.normal(size=(20, 64))
    scores = logme(informative, labels, 2).score, logme(noise, labels, 2).score
    assert all(np.isfinite(scores)) and scores[0] > scores[1]


def test_h_score_by_hand() -> None:
    # centred features -2, 0, 0, 2: variance 2; class means -1 and +1: between-class variance 1
    assert h_score(np.array([[-1.0], [1.0], [1.0], [3.0]]), np.array([0, 0, 1, 1]), shrinkage=0.0) == pytest.approx(0.5)
    # the classes are the whole of the variance
    assert h_score(np.array([[0.0], [0.0], [2.0], [2.0]]), np.array([0, 0, 1, 1]), shrinkage=0.0) == pytest.approx(1.0)


def test_ridge_probe_separates_separable_classes_and_not_random_ones() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 50)
    separable = np.eye(4)[labels] * 3 + 0.1 * rng.normal(size=(200, 4))
    assert ridge_probe(separable, labels, 4).accuracy == 1.0
    chance = ridge_probe(rng.normal(size=(200, 8)), rng.permutation(labels), 4)
    assert chance.accuracy < 0.45 and len(chance.per_fold(lambda y, p: 0.0)) == 5


def test_ridge_probe_weighs_classes_so_a_minority_class_is_not_voted_away() -> None:
    rng = np.random.default_rng(5)
    labels = np.array([0] * 650 + [1] * 100)  # 6.5 : 1, as sms-spam
    features = rng.normal(size=(750, 32))
    features[:, 0] += 1.2 * labels  # one weak direction tells the classes apart
    predictions = ridge_probe(features, labels, 2).predictions
    recall_minority = float((predictions[labels == 1] == 1).mean())
    assert recall_minority > 0.5  # unweighted least squares predicted the majority for every example (0.0)
