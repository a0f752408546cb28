"""The frozen-activation cache: same model as recomputing, keyed on everything it depends on, reused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tunelab.strategies import compile_strategy
from tunelab.training import Trainer
from tunelab.training.cache import ActivationCache
from tunelab.training.frozen_prefix import prefix_schedule

from tests.conftest import _build_training as setup

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


def test_model_that_cannot_be_served_falls_back_to_recomputing(tiny_config: dict, tmp_path: Path) -> None:
    import dataclasses

    tiny_config.update(strategy={"name": "head"})
    tiny_config["train"]["epochs"] = 1
    config, task, data, model, enc, loss_fn = setup(tiny_config)
    # two embedding modules (GPT-2 style wte + wpe): no single module feeds block 0, so no serving
    stack = model.layer_stack
    model.layer_stack = dataclasses.replace(stack, embedding_prefixes=stack.embedding_prefixes + ("network.bert.embeddings.LayerNorm.",))
    cache = ActivationCache(tmp_path)
    plan = compile_strategy(config.strategy, model, config.optim, 1)
    trainer = Trainer(config, task, data.label_names, loss_fn, CPU, 0, activation_cache=cache)
    trainer.fit(model, plan, enc["train"], enc["validation"])
    assert trainer.activation_cache is None and cache.stats.served_batches == 0
    assert cache.stats.notes and "recomputing" in cache.stats.notes[0]
    assert not any(tmp_path.iterdir())  # nothing half-built left behind


def test_served_forward_equals_full_forward_at_every_k(tiny_config: dict) -> None:
    from tunelab.models.prefix import capture_block_inputs

    tiny_config.update(head={"type": "linear", "pooling": "mean"})
    config, task, data, model, enc, loss_fn = setup(tiny_config)
    model.eval()
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0], [2, 8, 9, 10, 11, 12, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        reference = model(ids, mask)
        for k, hidden in capture_block_inputs(model, [0, 1, 2], ids, mask).items():
            hidden = hidden * mask.unsqueeze(-1)  # the cache stores no padding rows; they read back as zeros
            served = model(ids, mask, prefix_hidden=hidden, start_block=k)
            assert torch.allclose(served, reference, atol=1e-6), k
    assert len(model.network.encoder.layer) == 2  # the stack is restored after serving
