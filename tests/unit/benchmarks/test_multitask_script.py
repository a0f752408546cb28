"""benchmarks/multitask.py stays runnable: every leg's config validates, the single runs and the multi-task run
with one budget, the multi-task run on exactly the single runs' data sections."""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import load_benchmark
from tunelab.catalog import parse_config


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_every_leg_validates_with_one_budget(strategy: str) -> None:
    bench = load_benchmark("multitask")
    args = argparse.Namespace(max_length=128, epochs=4, temperature=2.0)
    datasets = [("bbc-news", 800), ("trec-questions", 200)]
    singles = [parse_config(bench.leg_config(strategy, 1, args, [d])) for d in datasets]
    for mixing in ("proportional", "temperature"):
        multi = parse_config(bench.leg_config(strategy, 1, args, datasets, mixing))
        assert multi.mixing.name == mixing and [e.name for e in multi.tasks] == ["bbc-news", "trec-questions"]
        for single, entry in zip(singles, multi.tasks):
            assert entry.data == single.data and entry.head == single.head and entry.head.type == "linear"
            assert (single.strategy, single.optim, single.train, single.early_stopping) == \
                (multi.strategy, multi.optim, multi.train, multi.early_stopping)
    assert singles[1].data.limit == 200 and singles[0].train.seed == 1
