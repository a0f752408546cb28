"""The forgetting meter's arithmetic, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.evaluation.forgetting import knn_overlap, linear_cka, relative_drift


def test_relative_drift_by_hand() -> None:
    # theta0 = (3, 4) (norm 5), theta = (3, 5): change (0, 1) -> 1 / 5
    assert relative_drift(1.0, 25.0) == pytest.approx(0.2)
    assert relative_drift(0.0, 25.0) == 0.0
    assert relative_drift(0.0, 0.0) == 0.0


def test_cka_of_identical_features_is_one() -> None:
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [50, 5])  # the (D, D) path and the (N, N) Gram path
def test_cka_is_invariant_to_rotation_and_scale(n: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, 3.0 * x @ rotation + 7.0) == pytest.approx(1.0)


def test_cka_of_independent_features_is_near_zero() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    assert linear_cka(x, y) < 0.02


def test_cka_by_hand() -> None:
    # x = (-1, 0, 1), y = (-1, 1, 0) after centring: <x,y>^2 = 1, ||x||^2 = ||y||^2 = 2 -> 1 / 4
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[0.0], [2.0], [1.0]])
    assert linear_cka(x, y) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, y[:2])


def test_knn_overlap() -> None:
    x = np.random.default_rng(3).normal(size=(30, 5))
    assert knn_overlap(x, x, k=10) == 1.0
    assert knn_overlap(x, 4.0 * x, k=10) == 1.0  # cosine neighbours ignore scale
    # four points on a line: each one's nearest neighbour (k=1) by cosine in 2-D
    a = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])   # pairs (0,1), (2,3)
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])   # pairs (0,2), (1,3)
    # kept: 0 -> 1 vs 2 no; 1 -> 0 vs 3 no; 2 -> 3 vs 0 no; 3 -> 2 vs 1 no
    assert knn_overlap(a, b, k=1) == 0.0
    # three points: 0 <-> 1 in both; row 2's nearest is 1 in c, 0 in d -> (1 + 1 + 0) / 3
    c = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    d = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.5]])
    assert knn_overlap(c, d, k=1) == pytest.approx(2 / 3)
