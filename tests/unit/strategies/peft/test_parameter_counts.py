"""Reported trainable parameters equal each method's formula plus the head (tiny BERT: H=32, FFN 64, 2 blocks)."""

from __future__ import annotations

import pytest

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.models import count_parameters
from tunelab.strategies import apply_trainable, compile_strategy

H, FFN, BLOCKS = 32, 64, 2
HEAD = (H * H + H) + (H * 2 + 2)   # native BERT head: pooler dense + classifier


def adapter(b: int) -> int:
    return (H * b + b) + (b * H + H)


FORMULAS = {
    "lora": ({"lora": {"rank": 4}}, BLOCKS * 2 * 4 * (H + H)),                  # r * (in + out) per target (q, v)
    "ia3": ({}, BLOCKS * (H + H + H + FFN)),                                     # key, value out; two output.dense in
    "houlsby": ({}, BLOCKS * 2 * adapter(H // 16)),
    "pfeiffer": ({"adapter": {"bottleneck": 4}}, BLOCKS * adapter(4)),
    "prompt_tuning": ({"prompt": {"num_tokens": 5}}, 5 * H),
    "prefix_tuning": ({"prefix": {"num_tokens": 3, "reparameterize": False}}, 3 * BLOCKS * 2 * H),
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_trainable_count_is_the_formula(name: str, build_tiny) -> None:
    extra, expected = FORMULAS[name]
    model = build_tiny()
    plan = compile_strategy(StrategyConfig(name=name, **extra), model, OptimConfig(), 1)
    apply_trainable(model, plan.trainable)
    assert count_parameters(model)[0] == expected + HEAD


def test_bitfit_trains_exactly_the_biases(build_tiny) -> None:
    model = build_tiny()
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias") and "pooler" not in n and "classifier" not in n)
    plan = compile_strategy(StrategyConfig(name="bitfit"), model, OptimConfig(), 1)
    apply_trainable(model, plan.trainable)
    assert count_parameters(model)[0] == biases + HEAD


def test_layerwise_lr_and_head_multiplier_combine_with_lora(build_tiny) -> None:
    model = build_tiny()
    plan = compile_strategy(StrategyConfig(name="lora", layerwise_lr_decay=0.5, head_lr_multiplier=2.0,
                                           lora={"lr": 1e-3}), model, OptimConfig(), 1)
    lr_of = {n: g.lr for g in plan.groups for n in g.names}
    assert lr_of["network.classifier.weight"] == pytest.approx(2e-3)
    assert lr_of["network.bert.encoder.layer.1.attention.self.query.lora_A.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr_of["network.bert.encoder.layer.0.attention.self.query.lora_A.weight"] == pytest.approx(1e-3 * 0.25)


def test_sequence_methods_refuse_freeze_blocks() -> None:
    from tunelab.catalog import parse_config
    from tunelab.errors import ConfigError

    with pytest.raises(ConfigError, match="freeze_blocks has no meaning for prompt_tuning"):
        parse_config({"data": {"builtin": "bbc-news"}, "strategy": {"name": "prompt_tuning", "freeze_blocks": 1}})
