"""The frozen-activation cache: same model as recomputing, keyed on everything it depends on, reused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tunelab.strategies import compile_strategy
from tunelab.training import Trainer
from tunelab.training.cache import ActivationCache, prefix_schedule

from .test_trainer import setup

CPU = torch.device("cpu")


def fit_pair(raw: dict, root: Path):
    """Train one initial model twice, recomputing and from the cache: ((model, eval) x 2, cache, plan)."""
    config, task, data, model, enc, loss_fn = setup(raw)
    twin, initial = copy.deepcopy(model), copy.deepcopy(model)
    cache = ActivationCache(root)
    results = []
    for net, activation_cache in ((model, None), (twin, cache)):
        torch.manual_seed(1)  # same dropout masks in the trained part of both runs
        plan = compile_strategy(config.strategy, net, config.optim, config.train.epochs)
        trainer = Trainer(config, task, data.label_names, loss_fn, CPU, 0, activation_cache=activation_cache)
        trainer.fit(net, plan, enc["train"], enc["validation"])
        results.append((net, trainer.evaluate(net, enc["test"])))
    moved = [n for (n, a), (_, b) in zip(model.named_parameters(), initial.named_parameters()) if not torch.equal(a, b)]
    assert moved and len(moved) == len(plan.ever_trainable)  # the comparison below is not vacuous
    return results, cache, plan


@pytest.mark.parametrize("strategy,head,starts", [
    ({"name": "head"}, "native", [2, 2, 2]),
    ({"name": "head"}, "linear", [2, 2, 2]),
    ({"name": "partial", "freeze_blocks": 1}, "native", [1, 1, 1]),
    ({"name": "partial", "freeze_blocks": 1}, "mlp", [1, 1, 1]),
    ({"name": "gradual"}, "native", [2, 1, 0]),
])
def test_cached_training_equals_recomputing(tiny_config: dict, tmp_path: Path, strategy: dict, head: str,
                                            starts: list[int]) -> None:
    tiny_config.update(strategy=strategy, head={"type": head})
    tiny_config["train"]["epochs"] = 3
    tiny_config["early_stopping"] = {"restore_best": False}
    [(plain, plain_eval), (cached, cached_eval)], cache, plan = fit_pair(tiny_config, tmp_path / "cache")
    assert prefix_schedule(cached, plan, 3) == starts
    assert cache.stats.computed_examples > 0  # the cached path really read from the cache
    for (name, a), (_, b) in zip(plain.named_parameters(), cached.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
    assert plain_eval.predictions.values == cached_eval.predictions.values
    assert plain_eval.loss == pytest.approx(cached_eval.loss, rel=1e-5, abs=1e-6)
    assert cache.stats.served_batches > 0
