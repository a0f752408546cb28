"""The trainer on the tiny model: learns, accumulates correctly, stops early, restores the best, fires events."""

from __future__ import annotations

import copy

import pytest
import torch

from tunelab.strategies import compile_strategy
from tunelab.training import Trainer
from tunelab.training.callbacks import Callback


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.trainable: list[int] = []
        self.model = None

    def on_fit_start(self, state, control): self.events.append("fit_start")
    def on_epoch_start(self, state, control):
        self.events.append(f"epoch_start{state.epoch}")
        self.trainable.append(sum(p.requires_grad for p in self.model.parameters()))
    def on_evaluate(self, state, control): self.events.append("evaluate")
    def on_epoch_end(self, state, control): self.events.append("epoch_end")
    def on_fit_end(self, state, control): self.events.append("fit_end")


def test_fit_learns_the_toy_task(tiny_config: dict, build_training) -> None:
    tiny_config["train"]["epochs"] = 6
    config, task, data, model, enc, loss_fn = build_training(tiny_config)
    trainer = Trainer(config, task, data.label_names, loss_fn, torch.device("cpu"), 0)
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    result = trainer.fit(model, plan, enc["train"], enc["validation"])
    assert result.steps == 6 * -(-len(enc["train"]) // 8)
    assert trainer.evaluate(model, enc["test"]).metrics["accuracy"] >= 0.9


def test_gradient_accumulation_matches_one_big_batch(tiny_config: dict, build_training) -> None:
    tiny_config["train"].update(epochs=1, batch_size=72)
    tiny_config["optim"] = {"lr": 1e-3, "weight_decay": 0.0}
    tiny_config["early_stopping"] = {"restore_best": False}
    config, task, data, model, enc, loss_fn = build_training(tiny_config)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    other = copy.deepcopy(model)
    plan = compile_strategy(config.strategy, model, config.optim, 1)
    Trainer(config, task, data.label_names, loss_fn, torch.device("cpu"), 0).fit(model, plan, enc["train"], None)
    small = config.model_copy(update={"train": config.train.model_copy(update={"batch_size": 24, "grad_accum_steps": 3})})
    plan2 = compile_strategy(config.strategy, other, config.optim, 1)
    Trainer(small, task, data.label_names, loss_fn, torch.device("cpu"), 0).fit(other, plan2, enc["train"], None)
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_events_and_gradual_unfreezing(tiny_config: dict, build_training) -> None:
    tiny_config["strategy"] = {"name": "gradual"}
    tiny_config["train"]["epochs"] = 4
    config, task, data, model, enc, loss_fn = build_training(tiny_config)
    recorder = Recorder()
    recorder.model = model
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    Trainer(config, task, data.label_names, loss_fn, torch.device("cpu"), 0, [recorder]).fit(model, plan, enc["train"], enc["validation"])
    assert recorder.events[0] == "fit_start" and recorder.events[-1] == "fit_end"
    assert recorder.events[1:5] == ["epoch_start0", "evaluate", "epoch_end", "epoch_start1"]
    assert recorder.trainable == sorted(recorder.trainable) and len(set(recorder.trainable)) == 4


def test_early_stopping_restores_best(tiny_config: dict, build_training) -> None:
    tiny_config["train"]["epochs"] = 8
    tiny_config["optim"] = {"lr": 0.5}  # diverges after the first epochs, so validation stops improving
    tiny_config["early_stopping"] = {"metric": "loss", "patience": 1}
    config, task, data, model, enc, loss_fn = build_training(tiny_config)
    trainer = Trainer(config, task, data.label_names, loss_fn, torch.device("cpu"), 0)
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    result = trainer.fit(model, plan, enc["train"], enc["validation"])
    assert result.stopped_early.startswith("early stopping: loss")
    assert result.epochs_run < 8
    assert trainer.evaluate(model, enc["validation"]).loss == pytest.approx(result.best_metric, rel=1e-5)
