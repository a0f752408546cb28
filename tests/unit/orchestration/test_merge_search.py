"""The validation search's grids and the greedy soup's rule, on a stand-in scorer whose validation score is a
known function of the merged weights: a run joins the soup exactly when the soup's score does not drop."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.models.merging import WeightSpace
from tunelab.orchestration.merge_search import LINEAR_MAX_POINTS, greedy_soup, grid, linear_weights, search


class _Scorer:
    """Validation macro_f1 = -|w - 2| of the merged scalar weight w, to 4 places (a real metric is a count's
    share: equal soups score exactly equal); the loss is |w|."""

    metric, mode = "macro_f1", "max"

    def score(self, state: dict, split: str) -> dict:
        w = float(state["w"][0])
        return {"macro_f1": round(-abs(w - 2.0), 4), "loss": abs(w)}

    def key(self, metrics: dict) -> tuple[float, float]:
        return (metrics["macro_f1"], -metrics["loss"])


class _FlatScorer(_Scorer):
    def score(self, state: dict, split: str) -> dict:
        return {"macro_f1": 1.0, "loss": abs(float(state["w"][0]))}


def _space(values: list[float]) -> WeightSpace:
    runs = [{"w": torch.tensor([v])} for v in values]
    return WeightSpace.from_names({"w": torch.tensor([0.0])}, runs, merged=["w"], averaged=[], fixed=[])


def test_the_soup_adds_a_run_only_when_its_score_does_not_drop() -> None:
    values = [2.4, 1.6, 3.0, 2.0, 0.0]      # ranked as a merge ranks them is not needed for the rule itself
    scorer = _Scorer()
    solo = [scorer.score({"w": torch.tensor([v])}, "validation") for v in values]
    members, state, steps = greedy_soup(_space(values), [str(v) for v in values], scorer, solo)
    # soup 2.4 (-0.4); + 1.6 -> 2.0 (0, added); + 3.0 -> 2.33 (drops); + 2.0 -> 2.0 (equal: added); + 0.0 -> 1.5
    assert members == [0, 1, 3]
    assert [s["added"] for s in steps] == [True, True, False, True, False]
    assert float(state["w"][0]) == pytest.approx(2.0)
    assert steps[2]["soup_validation"] == pytest.approx(-1 / 3, abs=1e-4)


def test_the_search_takes_the_best_point_and_the_earlier_of_equal_ones() -> None:
    point, state, rows = search(_space([1.0, 3.0]), "linear", _Scorer())
    assert point["weights"] == [0.5, 0.5] and float(state["w"][0]) == pytest.approx(2.0)  # uniform: w = 2
    point, _, rows = search(_space([0.0, 4.0]), "task_arithmetic", _Scorer())
    # lambda * 4 = 2 at lambda 0.5; every other point scores lower
    assert point["lambda"] == 0.5 and len(rows) == 10
    point, _, _ = search(_space([2.5, 1.5, 1.5]), "linear", _Scorer())
    # w = 2 at weights (0.5, 0.5, 0), (0.5, 0.25, 0.25), (0.5, 0, 0.5): equal scores, the one nearest uniform wins
    assert point["weights"] == [0.5, 0.25, 0.25]
    # every point scores alike: the uniform mean, although a single run has the lower loss |w|
    point, _, _ = search(_space([0.5, 3.0]), "linear", _FlatScorer())
    assert point["weights"] == [0.5, 0.5]


@pytest.mark.parametrize("n, points", [(2, 5), (3, 16), (4, 35), (5, 36), (6, 22), (8, 37), (12, 13)])
def test_the_linear_grid_starts_uniform_and_stays_small(n: int, points: int) -> None:
    weights = linear_weights(n)
    assert weights[0] == [round(1 / n, 6)] * n and len(weights) == points <= LINEAR_MAX_POINTS + 1
    spread = [sum((x - 1 / n) ** 2 for x in w) for w in weights]
    assert spread == sorted(spread) and max(weights[-1]) == 1.0       # nearest uniform first, single runs last
    assert all(math.isclose(sum(w), 1.0, abs_tol=1e-5) and min(w) >= 0 for w in weights)
    assert len({tuple(w) for w in weights}) == len(weights)


def test_the_grids_of_task_arithmetic_and_ties() -> None:
    assert [p["lambda"] for p in grid("task_arithmetic", 3)] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    ties = grid("ties", 3)
    assert len(ties) == 18 and ties[0] == {"density": 0.2, "lambda": 0.8}
