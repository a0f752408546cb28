"""How a merge chooses its weights: each method's small grid, every point merged and scored on the validation
split (never the test split), and the greedy soup's walk down the runs ranked by validation.

The grids:
- linear: the uniform mean first, then every point of the simplex in steps of 1/4 (1/3, 1/2 or 1 when there
  are so many runs that 1/4 would give more than 36 points), nearest the uniform mean first; a point that puts
  all weight on one run is that run unmerged, so the search may answer "no merge".
- task_arithmetic: lambda in 0.1, 0.2, ..., 1.0 (the task-arithmetic grid of the TIES reference code).
- ties: density (the share of each task vector kept) in 0.2 (the paper's default), 0.5 and 1.0, times lambda in
  0.8, 1.0, 1.2, 1.5, 2.0, 2.5 (the paper searched 0.8 to 2.5 in steps of 0.1; coarser here, 18 points in all).
A point is better when its validation metric is (the run's early_stopping.metric and mode); equal metrics go to
the earlier point, so the linear search prefers the most even mix. Not to the lower validation loss: a merge
averages heads that started from different random draws, which leaves it less confident than a single run at
the same accuracy (on BBC News the uniform mean of three full runs: validation loss 1.15 against 0.52, same
macro-F1), so a loss tie-break picks a single run almost every time. The greedy soup (Wortsman et al. 2022)
ranks the runs by validation metric (equal ones by the lower loss: runs alone are comparable in it), starts
from the best and adds each next run to the uniform soup only when the soup's validation metric does not drop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch

from tunelab.inference.predict import predict_split
from tunelab.models.merging import Tensors, WeightSpace, linear_merge, task_arithmetic, ties_merge, ties_vector
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.prepare import Prepared
from tunelab.training.callbacks.early_stopping import metric_mode

__all__ = ["GRID_METHODS", "GREEDY_SOUP", "METHODS", "Scorer", "grid", "linear_weights", "search", "greedy_soup",
           "scalars"]

GRID_METHODS = ("linear", "task_arithmetic", "ties")
GREEDY_SOUP = "greedy_soup"
METHODS = (*GRID_METHODS, GREEDY_SOUP)
TA_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(1, 11))
TIES_DENSITIES = (0.2, 0.5, 1.0)
TIES_LAMBDAS = (0.8, 1.0, 1.2, 1.5, 2.0, 2.5)
LINEAR_MAX_POINTS = 36
Point = dict[str, Any]


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics dict (per-class tables and the like left out), rounded for the record."""
    return {k: round(float(v), 6) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class Scorer:
    """Scores weights on a prepared split through one model of the runs' architecture, as training's evaluation
    does (predict_split, the task's metrics, the loss)."""

    prepared: Prepared
    model: TaskModel
    loss_fn: Any

    @property
    def metric(self) -> str:
        return self.prepared.config.early_stopping.metric or "loss"

    @property
    def mode(self) -> str:
        return metric_mode(self.metric, self.prepared.config.early_stopping.mode)

    def score(self, state: Tensors, split: str) -> dict[str, Any]:
        self.model.load_state_dict(state)
        return self.score_model(self.model, split)

    def score_model(self, model: TaskModel, split: str) -> dict[str, Any]:
        prepared = self.prepared
        encoded = prepared.encoded[split]
        predictions, loss = predict_split(model, encoded, prepared.task, prepared.label_names,
                                          batch_size=prepared.config.train.evaluation_batch_size,
                                          pad_id=prepared.tokenizer.pad_token_id or 0, device=prepared.device,
                                          precision=prepared.config.train.precision, loss_fn=self.loss_fn)
        return {"loss": loss, **prepared.task.metrics(encoded, predictions, prepared.label_names)}

    def key(self, metrics: dict[str, Any]) -> tuple[float, float]:
        """Larger is better: the metric (negated when lower is better), then the lower loss."""
        value = float(metrics[self.metric])
        loss = float(metrics.get("loss", float("nan")))
        return (value if self.mode == "max" else -value, -loss if loss == loss else float("-inf"))


def linear_weights(n: int) -> list[list[float]]:
    """The linear grid: uniform first, then the simplex lattice at the finest step that keeps it small."""
    uniform = [round(1.0 / n, 6)] * n
    steps = next(s for s in (4, 3, 2, 1) if s == 1 or _lattice_size(s, n) <= LINEAR_MAX_POINTS)
    lattice = [[round(c / steps, 6) for c in point] for point in _compositions(steps, n)]
    lattice.sort(key=lambda w: sum((x - 1.0 / n) ** 2 for x in w))  # stable: equal distances keep lattice order
    return [uniform, *[w for w in lattice if w != uniform]]


def _lattice_size(steps: int, n: int) -> int:
    from math import comb

    return comb(steps + n - 1, n - 1)


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def grid(method: str, n: int) -> list[Point]:
    if method == "linear":
        return [{"weights": w} for w in linear_weights(n)]
    if method == "task_arithmetic":
        return [{"lambda": lam} for lam in TA_LAMBDAS]
    if method == "ties":
        return [{"density": d, "lambda": lam} for d in TIES_DENSITIES for lam in TIES_LAMBDAS]
    raise ValueError(f"no grid for method {method!r}")


def merged_state(space: WeightSpace, method: str, point: Point,
                 ties_cache: Optional[dict[float, torch.Tensor]] = None) -> Tensors:
    """The merged weights at one grid point (TIES's merged vector kept per density in `ties_cache`)."""
    if method == "linear":
        return linear_merge(space, point["weights"])
    if method == "task_arithmetic":
        return task_arithmetic(space, point["lambda"])
    cache = {} if ties_cache is None else ties_cache
    if point["density"] not in cache:
        cache[point["density"]] = ties_vector(space.vectors(), point["density"])
    return ties_merge(space, point["density"], point["lambda"], merged=cache[point["density"]])


def search(space: WeightSpace, method: str, scorer: Scorer,
           say: Callable[[str], None] = lambda line: None) -> tuple[Point, Tensors, list[Point]]:
    """Every grid point merged and scored on validation: (the chosen point, its weights, every point's row)."""
    rows: list[Point] = []
    best: Optional[tuple[float, Point, Tensors]] = None
    cache: dict[float, torch.Tensor] = {}
    for point in grid(method, len(space)):
        started = time.perf_counter()
        state = merged_state(space, method, point, cache)
        metrics = scorer.score(state, "validation")
        row = {**point, "validation": round(float(metrics[scorer.metric]), 6),
               "validation_loss": round(float(metrics["loss"]), 6), "seconds": round(time.perf_counter() - started, 3)}
        rows.append(row)
        say(f"{method} {_show(point)}: validation {scorer.metric} {row['validation']:.4f}")
        if best is None or scorer.key(metrics)[0] > best[0]:  # the metric alone: equal ones keep the earlier
            best = (scorer.key(metrics)[0], row, state)
    assert best is not None
    return best[1], best[2], rows


def greedy_soup(space: WeightSpace, names: list[str], scorer: Scorer, solo: list[dict[str, Any]],
                say: Callable[[str], None] = lambda line: None) -> tuple[list[int], Tensors, list[Point]]:
    """The runs of `space` are in ranked order (best validation first; `solo` their own validation metrics):
    (the soup's members, its weights, one row per step)."""
    members = [0]
    state = linear_merge(space, _uniform_over(members, len(space)))
    current = solo[0]
    steps = [{"run": names[0], "added": True, "soup_validation": round(float(current[scorer.metric]), 6),
              "reason": "the best run on validation starts the soup"}]
    for i in range(1, len(space)):
        started = time.perf_counter()
        trial = linear_merge(space, _uniform_over([*members, i], len(space)))
        metrics = scorer.score(trial, "validation")
        added = _at_least(scorer, metrics, current)
        if added:
            members, state, current = [*members, i], trial, metrics
        steps.append({"run": names[i], "added": added, "soup_validation": round(float(metrics[scorer.metric]), 6),
                      "seconds": round(time.perf_counter() - started, 3)})
        say(f"soup + {names[i]}: validation {scorer.metric} {float(metrics[scorer.metric]):.4f} "
            f"({'added' if added else 'left out: the soup would drop'})")
    return members, state, steps


def _at_least(scorer: Scorer, metrics: dict[str, Any], current: dict[str, Any]) -> bool:
    """The soup's validation metric does not drop (the loss does not break this tie: a soup keeps a run that
    scores as well)."""
    return scorer.key(metrics)[0] >= scorer.key(current)[0]


def _uniform_over(members: list[int], n: int) -> list[float]:
    return [1.0 / len(members) if i in members else 0.0 for i in range(n)]


def _show(point: Point) -> str:
    return ", ".join(f"{k} {v}" for k, v in point.items())
