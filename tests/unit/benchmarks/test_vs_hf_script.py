"""benchmarks/vs_hf.py stays runnable: its tunelab configs validate for every strategy it times, and its
FLOP model counts less work for tunelab exactly where the cache skips the frozen blocks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tunelab.catalog import parse_config
from tunelab.strategies.registry import strategy_names

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "vs_hf.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vs_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_hf"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("strategy", ["head", "partial", "lora", "full"])
def test_tunelab_configs_validate(bench, strategy: str, tmp_path: Path) -> None:
    if strategy not in strategy_names():
        pytest.skip(f"{strategy} is not registered in this tree; the script skips its row")
    setting = bench.Setting(strategy=strategy, epochs=1, limit=50, max_length=64, batch_size=8, lr=1e-4, seed=0,
                            threads=1, cache_dir=str(tmp_path))
    config = parse_config(bench.tunelab_config(setting))
    assert config.strategy.name == strategy and config.train.cache_dir == str(tmp_path)


def test_flops_model(bench) -> None:
    tokens = {"train": 1000, "validation": 100, "test": 200, "train_examples": 10}
    for strategy in ("head", "partial"):
        assert bench.model_flops("tunelab", strategy, 3, tokens) < bench.model_flops("peer", strategy, 3, tokens)
        assert bench.model_flops("tunelab", strategy, 3, tokens, cache_cold=False) < bench.model_flops("tunelab", strategy, 3, tokens)
    assert bench.model_flops("tunelab", "full", 3, tokens) == bench.model_flops("peer", "full", 3, tokens)
