"""benchmarks/vs_hf.py stays runnable: its tunelab configs validate for every strategy it times, and its
FLOP model counts less work for tunelab exactly where the cache skips the frozen blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark

from tunelab.catalog import parse_config
from tunelab.strategies.registry import strategy_names



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("vs_hf")


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


def test_ratios_against_each_peer_leg(bench) -> None:
    """--peer-precision both: tunelab's one run gets a ratio against the peer's default and its best leg."""
    tokens = {"train": 1000, "validation": 100, "test": 200, "train_examples": 10}
    peer = lambda wall, gpu: {"wall_s": wall, "accuracy": 0.9, "peak_rss_mb": 100.0, "peak_gpu_mb": gpu,  # noqa: E731
                              "train_examples": 10, "tokens": tokens}
    ours = {"wall_s": 10.0, "accuracy": 0.92, "peak_rss_mb": 150.0, "peak_gpu_mb": 50.0}
    row = {"strategy": "full", "epochs": 2}
    for leg, run in (("fp32", peer(20.0, 100.0)), ("bf16", peer(15.0, None))):
        bench._add_rates(row, leg, run, ours, {})
    assert ours["vs_fp32"]["ratio"] == 2.0 and ours["vs_bf16"]["ratio"] == 1.5
    assert ours["vs_fp32"]["gpu_ratio"] == 0.5 and ours["vs_bf16"]["gpu_ratio"] is None
    assert abs(ours["vs_bf16"]["accuracy_gap_points"] - 2.0) < 1e-9
    assert ours["train_tokens_per_s"] == 1000 * 2 / 10.0


def test_length_grouping_only_on_the_best_leg(bench, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    base = dict(strategy="full", epochs=1, limit=50, max_length=64, batch_size=8, lr=1e-4, seed=0, threads=1,
                cache_dir=str(tmp_path), peer_group_by_length=True)
    assert bench._peer_sampler(bench.Setting(**base, peer_precision="fp32")) == {}
    chosen = bench._peer_sampler(bench.Setting(**base, peer_precision="bf16"))
    (name, value), = chosen.items()
    assert name in TrainingArguments.__dataclass_fields__ and value in (True, "group_by_length")


def test_the_machine_flags_name_the_bf16_units(bench) -> None:
    flags = bench.machine_flags("cpu")
    assert set(flags) == {"cpu_capability", "avx512_bf16", "amx"} and isinstance(flags["cpu_capability"], str)
