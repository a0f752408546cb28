"""benchmarks/augment.py and benchmarks/pseudo_label.py stay runnable: every leg's config validates, and the
augmentation summary compares each leg with the unaugmented one over the same seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark as _load
from tunelab.catalog import parse_config


@pytest.mark.parametrize("leg", ["none", "span_mask", "swap", "token_dropout", "all"])
def test_every_augmentation_leg_validates(leg: str) -> None:
    bench = _load("augment")
    config = parse_config({**bench.CONFIG, "data": {"builtin": "bbc-news", "train_fraction": 0.1,
                                                     "augment": bench.LEGS[leg]}})
    assert config.data.augment.text_enabled == (leg != "none")


def test_the_summary_is_against_no_augmentation() -> None:
    bench = _load("augment")
    runs = [{"dataset": "d", "leg": leg, "seed": seed, "macro_f1": f1, "accuracy": f1, "train_time_s": 1.0}
            for leg, seed, f1 in (("none", 0, 0.5), ("none", 1, 0.7), ("all", 0, 0.6), ("all", 1, 0.8))]
    rows = {row["leg"]: row for row in bench.summarise(runs)}
    assert rows["all"]["points_vs_none"] == pytest.approx(10.0) and rows["none"]["macro_f1_std"] > 0


def test_the_pseudo_label_config_validates(tmp_path: Path) -> None:
    bench = _load("pseudo_label")
    config = parse_config({**bench.CONFIG, "data": {"train": "s.csv", "test": "t.csv", "max_length": 64}})
    assert config.strategy.name == "full"
