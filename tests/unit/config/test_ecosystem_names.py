"""Names users bring from Hugging Face, peft and Axolotl: accepted where they mean one tunelab name, pointed at
tunelab's name where they do not (issue 13, "Names users bring from the ecosystem")."""

from __future__ import annotations

from typing import Any

import pytest

from tunelab.catalog import parse_config
from tunelab.config import config_to_yaml
from tunelab.errors import ConfigError
from tunelab.tasks.registry import TASK_ALIASES, TASK_HINTS, TASKS

DATA = {"train": "train.csv"}


def refusal(**raw: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({"data": DATA, **raw})
    return str(err.value)


@pytest.mark.parametrize("given, wanted", [
    ("image-classification", "image_classification"), ("text-classification", "classification"),
    ("token-classification", "token_classification"), ("text_classification", "classification"),
    ("sequence-classification", "classification"), ("ner", "token_classification"), ("NER", "token_classification"),
    ("multi_label", "multilabel"), ("multi-label-classification", "multilabel"), ("sft", "instruction_tuning"),
    ("causal-lm", "causal_lm"), ("clm", "causal_lm"), ("fill-mask", "mlm"), ("masked_lm", "mlm"),
])
def test_unambiguous_task_aliases_resolve_to_tunelab_names(given: str, wanted: str) -> None:
    config = parse_config({"task": given, "data": DATA})
    assert config.task == wanted
    assert f"task: {wanted}\n" in config_to_yaml(config)   # the saved config says tunelab's name


@pytest.mark.parametrize("given, meant", [("text-generation", "instruction_tuning"),
                                         ("text2text-generation", "instruction_tuning"), ("lm", "causal_lm")])
def test_ambiguous_task_names_get_a_did_you_mean(given: str, meant: str) -> None:
    assert f"task: unknown task {given!r} (did you mean {meant!r}?)" in refusal(task=given)


def test_alias_tables_name_registered_tasks_only() -> None:
    assert set(TASK_ALIASES.values()) | set(TASK_HINTS.values()) <= set(TASKS)
    assert not set(TASK_ALIASES) & set(TASK_HINTS)


def test_flat_lora_keys_are_pointed_at_the_lora_section() -> None:
    text = refusal(strategy={"name": "lora", "rank": 8, "alpha": 16, "target_modules": ["query", "value"]})
    assert "strategy.rank: unknown key; LoRA options live under strategy.lora: strategy.lora.rank" in text
    assert "strategy.alpha: unknown key; LoRA options live under strategy.lora: strategy.lora.alpha" in text
    assert "LoRA options live under strategy.lora: strategy.lora.target_modules" in text


@pytest.mark.parametrize("peft, ours", [("r", "rank"), ("lora_r", "rank"), ("lora_alpha", "alpha"),
                                        ("lora_dropout", "dropout"), ("use_rslora", "rslora"), ("use_dora", "dora")])
def test_peft_lora_names_flat_and_in_the_section(peft: str, ours: str) -> None:
    flat = refusal(strategy={"name": "lora", peft: 1})
    assert f"strategy.{peft}: unknown key; LoRA options live under strategy.lora: strategy.lora.{ours}" in flat
    nested = refusal(strategy={"name": "lora", "lora": {peft: 1}})
    assert f"strategy.lora.{peft}: unknown key (did you mean {ours!r}?)" in nested


@pytest.mark.parametrize("strategy, section, peft, ours", [
    ("prompt_tuning", "prompt", "num_virtual_tokens", "num_tokens"),
    ("prompt_tuning", "prompt", "prompt_tuning_init_text", "init_words"),
    ("prefix_tuning", "prefix", "num_virtual_tokens", "num_tokens"),
    ("prefix_tuning", "prefix", "prefix_projection", "reparameterize"),
    ("houlsby", "adapter", "non_linearity", "activation"),
    ("pfeiffer", "adapter", "adapter_size", "bottleneck"),
    ("ia3", "ia3", "feedforward_modules", "feedforward_modules"),
])
def test_other_methods_name_their_section_and_key(strategy: str, section: str, peft: str, ours: str) -> None:
    flat = refusal(strategy={"name": strategy, peft: 1})
    assert f"strategy.{peft}: unknown key; " in flat and f"options live under strategy.{section}: " \
           f"strategy.{section}.{ours}" in flat
    if peft != ours:
        nested = refusal(strategy={"name": strategy, section: {peft: 1}})
        assert f"strategy.{section}.{peft}: unknown key (did you mean {ours!r}?)" in nested


def test_a_method_option_under_a_depth_strategy_names_the_method() -> None:
    text = refusal(strategy={"name": "full", "rank": 8})
    assert "strategy.rank: unknown key for strategy 'full'; it is a method option: strategy.lora.rank " \
           "(with strategy.name: lora)" in text


def test_unknown_flat_keys_keep_the_spelling_hint() -> None:
    assert "strategy.freeze_block: unknown key (did you mean 'freeze_blocks'?)" in \
        refusal(strategy={"name": "partial", "freeze_blocks": 2, "freeze_block": 2})


def test_strategy_lr_points_to_its_place() -> None:
    from tunelab.catalog import parse_config
    from tunelab.errors import ConfigError

    for strategy, where in (({"name": "partial", "freeze_blocks": 2, "lr": 1e-4}, "optim.lr"),
                            ({"name": "full", "learning_rate": 1e-4}, "optim.lr"),
                            ({"name": "lora", "learning_rate": 1e-3}, "strategy.lora.lr")):
        with pytest.raises(ConfigError) as caught:
            parse_config({"data": {"builtin": "bbc-news"}, "strategy": strategy})
        assert where in str(caught.value), caught.value


def test_strategy_keys_are_reported_beside_schema_errors_elsewhere() -> None:
    """Trainer's `learning_rate` and peft's flat `r` in one config: both in one message, not one per try."""
    text = refusal(strategy={"name": "lora", "r": 8, "lora": {"rnak": 4}}, optim={"learning_rate": 1e-4})
    assert "optim.learning_rate: unknown key (did you mean 'lr'?)" in text
    assert "strategy.r: unknown key; LoRA options live under strategy.lora: strategy.lora.rank" in text
    assert "strategy.lora.rnak: unknown key (did you mean 'rank'?)" in text
