"""Data facts: counts, imbalance, truncation, classes outside train, and warnings that say what to do."""

from __future__ import annotations

import torch

from tunelab.data.encoding import EncodedSplit
from tunelab.data.facts import data_facts


def _split(labels: list[int], lengths: list[int]) -> EncodedSplit:
    return EncodedSplit(input_ids=[[5] * n for n in lengths], targets=torch.tensor(labels), records=[])


def test_facts_count_classes_truncation_and_classes_only_outside_train() -> None:
    encoded = {"train": _split([0] * 12 + [1] * 3, [8] * 5 + [3] * 10),
               "validation": _split([0, 2], [3, 3]), "test": _split([1], [3])}
    facts = data_facts(encoded, ["a", "b", "c"], max_length=8, unknown_token_rate=0.2)
    assert facts.per_class == {"a": 12, "b": 3, "c": 0} and facts.imbalance_ratio == 4.0
    assert facts.truncated_share == 5 / 15 and facts.only_outside_train == ["c"]
    lines = facts.warnings(max_length=8)
    assert any("'c' has 0 training examples" in line and "add examples" in line for line in lines)
    assert any("'c' appear in validation / test but never in train" in line for line in lines)
    assert any("33% of the training examples reach data.max_length (8 tokens)" in line for line in lines)
    assert any("20.0% of the training sub-tokens are unknown" in line for line in lines)


def test_a_healthy_split_warns_of_nothing() -> None:
    encoded = {name: _split([0] * 20 + [1] * 20, [4] * 40) for name in ("train", "validation", "test")}
    facts = data_facts(encoded, ["a", "b"], max_length=8, unknown_token_rate=0.001)
    assert facts.imbalance_ratio == 1.0 and facts.truncated_share == 0.0 and facts.warnings(8) == []


def test_regression_targets_have_no_classes() -> None:
    split = EncodedSplit(input_ids=[[5, 6]] * 4, targets=torch.tensor([0.5, 1.0, 2.0, 3.0]), records=[])
    facts = data_facts({"train": split, "validation": split, "test": split}, [], 8, None)
    assert facts.per_class == {} and facts.imbalance_ratio is None and facts.only_outside_train == []
