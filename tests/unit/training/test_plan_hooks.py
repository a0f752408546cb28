"""What a strategy can add to a run through its Plan (loss terms, callbacks), and what callbacks see: the
per-group learning rates, the gradient norm, a read-only view of the model and the rank."""

from __future__ import annotations

import copy
import dataclasses

import torch

from tunelab.strategies import compile_strategy
from tunelab.strategies.plan import LossTerm
from tunelab.training import Trainer
from tunelab.training.callbacks import Callback
from tests.conftest import without_dropout

CPU = torch.device("cpu")


class Seen(Callback):
    def __init__(self) -> None:
        self.states = []

    def on_step_end(self, state, control) -> None:
        self.states.append(state)


def _setup(tiny_config: dict, build_training, **train):
    tiny_config["train"].update(epochs=1, **train)
    tiny_config["optim"] = {"lr": 1e-3, "weight_decay": 0.0}
    tiny_config["early_stopping"] = {"restore_best": False}
    config, task, data, model, enc, loss_fn = build_training(tiny_config)
    return config, task, data, without_dropout(model), enc, loss_fn


def test_plan_loss_terms_join_the_task_loss(tiny_config: dict, build_training) -> None:
    """A term `w * ||head weight||^2` changes the update exactly as the same term written into the loss."""
    config, task, data, model, enc, loss_fn = _setup(tiny_config, build_training)
    twin = copy.deepcopy(model)
    penalty = lambda m, batch: sum((p ** 2).sum() for n, p in m.named_parameters() if "classifier" in n)  # noqa: E731
    plan = compile_strategy(config.strategy, model, config.optim, 1)
    plan = dataclasses.replace(plan, loss_terms=[LossTerm("l2_head", penalty, weight=0.5)])
    Trainer(config, task, data.label_names, loss_fn, CPU, 0).fit(model, plan, enc["train"], None)

    class WithPenalty(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = loss_fn

        def forward(self, logits, targets):
            return self.inner(logits, targets) + 0.5 * penalty(twin, None)

    plain = compile_strategy(config.strategy, twin, config.optim, 1)
    Trainer(config, task, data.label_names, WithPenalty(), CPU, 0).fit(twin, plain, enc["train"], None)
    untouched = compile_strategy(config.strategy, copy.deepcopy(twin), config.optim, 1)
    assert untouched.loss_terms == []
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_plan_callbacks_run_and_see_lrs_grad_norm_model_and_rank(tiny_config: dict, build_training) -> None:
    tiny_config["strategy"] = {"name": "full", "layerwise_lr_decay": 0.5}
    config, task, data, model, enc, loss_fn = _setup(tiny_config, build_training, max_grad_norm=None)
    seen = Seen()
    plan = dataclasses.replace(compile_strategy(config.strategy, model, config.optim, 1), callbacks=[seen])
    Trainer(config, task, data.label_names, loss_fn, CPU, 0).fit(model, plan, enc["train"], None)
    assert len(seen.states) == -(-len(enc["train"]) // config.train.batch_size)
    state = seen.states[len(seen.states) // 2]  # mid-schedule: the linear decay reaches 0 at the last step
    assert state.rank == 0
    assert set(state.lrs) == {g.label for g in plan.groups if g.names} and len(set(state.lrs.values())) > 1
    assert state.lr == max(state.lrs.values())
    assert state.grad_norm is not None and state.grad_norm > 0
    params = dict(state.model.named_parameters())
    assert set(params) == {n for n, _ in model.named_parameters()}
    assert all(not p.requires_grad for p in params.values())  # detached: reading cannot enter autograd
    assert set(state.model.trainable_names()) == plan.trainable


def test_grad_norm_is_the_norm_before_clipping(tiny_config: dict, build_training) -> None:
    config, task, data, model, enc, loss_fn = _setup(tiny_config, build_training, max_grad_norm=1e-6)
    seen = Seen()
    plan = dataclasses.replace(compile_strategy(config.strategy, model, config.optim, 1), callbacks=[seen])
    Trainer(config, task, data.label_names, loss_fn, CPU, 0).fit(model, plan, enc["train"], None)
    assert all(s.grad_norm > 1e-3 for s in seen.states)  # far above the clip: reported unclipped
