"""benchmarks/domain_adapt.py stays runnable: its MLM, classification and causal-LM configs validate, and the
summary compares the adapted backbone with plain MiniLM seed by seed."""

from __future__ import annotations

import pytest

from tests.conftest import load_benchmark as _load
from tunelab.catalog import parse_config


def test_every_config_validates() -> None:
    bench = _load("domain_adapt")
    mlm = parse_config({**bench.MLM_CONFIG, "data": {"train": "u.txt", "max_length": 64}})
    assert mlm.task == "mlm" and mlm.strategy.name == "full"
    head_only = parse_config({**bench.MLM_CONFIG, "strategy": bench.HEAD_ONLY, "data": {"train": "u.txt"}})
    assert head_only.strategy.freeze_blocks == 6
    classify = parse_config({**bench.CLASSIFY_CONFIG, "model": "runs/mlm/model",
                             "data": {"train": "l.csv", "test": "t.csv"}})
    assert classify.task == "classification" and classify.early_stopping.metric == "macro_f1"
    assert parse_config({**bench.CLM_CONFIG, "data": {"train": "play.txt"}}).task == "causal_lm"


def test_the_summary_is_against_plain_minilm_on_the_same_seeds() -> None:
    bench = _load("domain_adapt")
    rows = [{"backbone": b, "seed": s, "fraction": 0.1, "macro_f1": f1}
            for b, s, f1 in (("minilm", 0, 0.50), ("minilm", 1, 0.60), ("minilm+mlm", 0, 0.55), ("minilm+mlm", 1, 0.62))]
    summary = {row["backbone"]: row for row in bench.summarise(rows)}
    assert summary["minilm+mlm"]["points_vs_minilm"] == pytest.approx(3.5)
    assert summary["minilm+mlm"]["points_vs_minilm_per_seed"] == [5.0, 2.0]
    assert summary["minilm"]["points_vs_minilm"] == 0.0 and summary["minilm"]["macro_f1_std"] > 0
