"""benchmarks/merge.py stays runnable: the comparison it trains is the demo config with its overrides, and the
methods it merges by are tunelab's. No training."""

from __future__ import annotations

from tests.conftest import load_benchmark
from tunelab.catalog import load_config
from tunelab.configs import DEMO_CONFIG
from tunelab.orchestration.merge_search import GRID_METHODS


def test_the_comparison_config_validates() -> None:
    bench = load_benchmark("merge")
    config = load_config(DEMO_CONFIG, bench.overrides(bench.parse_args(["--limit", "800"])))
    assert config.data.limit == 800 and config.data.max_length == 128 and not config.forgetting.measure
    assert config.model.name == "minilm" and config.data.builtin == "bbc-news"


def test_it_merges_by_every_grid_method() -> None:
    assert load_benchmark("merge").METHODS == GRID_METHODS
