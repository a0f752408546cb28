"""Forgetting guards: validated with the strategy rules, attached to every strategy's Plan, penalties and the
Fisher checked by hand, only the pre-trained parameters that train held (never the head or frozen blocks)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.catalog import parse_config
from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.data.encoding import Batch
from tunelab.errors import ConfigError
from tunelab.strategies import compile_strategy
from tunelab.strategies.guards import guard_penalty
from tunelab.strategies.guards.fisher import diagonal_fisher

DATA = {"builtin": "bbc-news"}


def strategy(**fields) -> StrategyConfig:
    return parse_config({"data": DATA, "strategy": fields}).strategy


def test_guard_section_resolves_with_defaults_for_every_kind_of_strategy() -> None:
    for name in ("full", "partial", "gradual", "lora", "houlsby"):
        extra = {"freeze_blocks": 2} if name == "partial" else {}
        config = strategy(name=name, guard={"name": "ewc"}, **extra)
        assert (config.guard.name, config.guard.strength, config.guard.fisher_examples) == ("ewc", 1.0e5, 256)
    assert strategy(name="full", guard={"name": "l2sp"}).guard.strength == 0.01


def test_guard_errors_are_all_reported_with_their_key_paths() -> None:
    raw = {"data": DATA, "strategy": {"name": "lora", "lora": {"rank": 0},
                                      "guard": {"name": "ewc", "strength": 0, "fisher": 3}}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "strategy.lora.rank" in text and "strategy.guard.strength" in text
    assert "strategy.guard.fisher: unknown key (did you mean 'fisher_examples'?)" in text
    for guard, line in (({"name": "replay", "ratio": 0}, "strategy.guard.ratio"),
                        ({"name": "si"}, "strategy.guard.name: unknown guard 'si'; choose one of: l2sp, ewc, replay"),
                        ("l2sp", "strategy.guard: expected a mapping")):
        with pytest.raises(ConfigError, match=line):
            parse_config({"data": DATA, "strategy": {"name": "full", "guard": guard}})


def test_l2sp_penalty_by_hand_and_only_on_trained_pretrained_weights(build_tiny) -> None:
    model = build_tiny()
    plan = compile_strategy(strategy(name="partial", freeze_blocks=1, guard={"name": "l2sp", "strength": 2.0}),
                            model, OptimConfig(), 1)
    term = plan.loss_terms[-1]
    penalty = guard_penalty(plan)
    assert term.name == "guard:l2sp" and term.weight == 2.0 and term.compute is penalty
    stack = model.layer_stack
    assert penalty.direct and all(stack.group_of(n) == 1 for n in penalty.direct)  # block 0 frozen, head free
    assert float(penalty(model).detach()) == 0.0
    params = dict(model.named_parameters())
    with torch.no_grad():
        params[penalty.direct[0]].view(-1)[0] += 0.5
        params["network.classifier.weight"].add_(3.0)            # the head is not held
    assert float(penalty(model).detach()) == pytest.approx(0.25)


def test_lora_guard_holds_the_delta_of_each_adapted_weight(build_tiny) -> None:
    model = build_tiny()
    plan = compile_strategy(strategy(name="lora", lora={"rank": 2, "target_modules": ["query"]},
                                     guard={"name": "l2sp"}), model, OptimConfig(), 1)
    penalty = guard_penalty(plan)
    assert penalty.direct == [] and len(penalty.deltas) == 2          # one query per block
    layer = model.get_submodule(next(iter(penalty.deltas)))
    with torch.no_grad():
        layer.lora_B.weight.fill_(0.1)
    expected = float(layer.delta_weight().detach().pow(2).sum())
    assert float(penalty(model).detach()) == pytest.approx(expected)
    assert penalty.held_count() == 2 * layer.base_layer.weight.numel()


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).sum(-1)


def test_diagonal_fisher_is_the_mean_squared_per_example_gradient() -> None:
    # loss = (w.x - y)^2, gradient 2 (w.x - y) x: x=(1,2), y=0 -> w.x=-1 -> (-2,-4); x=(1,0), y=2 -> (-2, 0)
    model = _Linear()
    model.w.requires_grad_(False)
    batches = [Batch({"x": torch.tensor([[1.0, 2.0]])}, torch.tensor([0.0]), torch.tensor([0])),
               Batch({"x": torch.tensor([[1.0, 0.0]])}, torch.tensor([2.0]), torch.tensor([1]))]
    fisher = diagonal_fisher(model, ["w"], batches, lambda out, y: ((out - y) ** 2).sum(), torch.device("cpu"))
    assert torch.allclose(fisher["w"], torch.tensor([(4 + 4) / 2, (16 + 0) / 2]))
    assert not model.w.requires_grad and model.w.grad is None      # left as found


def test_ewc_without_its_fisher_refuses_to_run(build_tiny) -> None:
    model = build_tiny()
    plan = compile_strategy(strategy(name="full", guard={"name": "ewc", "strength": 4.0}), model, OptimConfig(), 1)
    assert plan.loss_terms[-1].weight == 2.0                              # strength / 2
    with pytest.raises(Exception, match="Fisher was never computed"):
        guard_penalty(plan)(model)
