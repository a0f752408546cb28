"""benchmarks/dpo.py stays runnable: its config (configs/smollm2-preference.yaml with the call's settings) validates
as a LoRA preference run on the built-in pairs."""

from __future__ import annotations

import argparse

from tests.conftest import load_benchmark
from tunelab.catalog import parse_config


def test_the_run_validates_with_the_calls_settings() -> None:
    bench = load_benchmark("dpo")
    args = argparse.Namespace(limit=300, max_length=96, epochs=1, batch_size=4, lr=5e-4, beta=0.2)
    config = parse_config(bench.leg_config(args))
    assert (config.task, config.strategy.name, config.data.builtin) == ("preference", "lora", "bbc-section-pairs")
    assert (config.data.limit, config.data.max_length, config.train.epochs, config.train.batch_size) == (300, 96, 1, 4)
    assert config.strategy.lora.lr == 5e-4 and config.preference.beta == 0.2 and config.data.split_seed == 0
