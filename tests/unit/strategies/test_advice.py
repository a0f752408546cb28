"""recommend's rules: each decision from the evidence that should lead to it, with its reason."""

from __future__ import annotations

from tunelab.strategies.advice import LOW_DATA_PER_CLASS, MIN_PER_CLASS, PROBE_CEILING, Evidence, advise, useful_depth


def _evidence(**changes) -> Evidence:
    values = dict(logme=[-1.0, -0.8, -0.6, -0.5, -0.45, -0.44, -0.44], probe=0.85, probe_spread=0.01,
                  logme_cls=-0.6, declared_pooling="mean", per_class={"a": 200, "b": 180},
                  imbalance_ratio=200 / 180, epochs=3)
    return Evidence(**{**values, **changes})


def test_useful_depth_is_where_the_curve_has_made_most_of_its_rise() -> None:
    assert useful_depth([-1.0, -0.8, -0.6, -0.5, -0.45, -0.44, -0.44]) == 4  # 0.55 of a 0.56 rise: >= 90%
    assert useful_depth([-1.0, -0.9, -0.8, -0.7, -0.6, -0.5, -0.4]) == 6      # still rising at the top
    assert useful_depth([-0.5, -0.6, -0.7]) == 2                             # never rises: all blocks


def test_a_curve_that_flattens_early_retrains_the_blocks_above() -> None:
    advice = advise(_evidence(logme=[-1.0, -0.7, -0.6, -0.46, -0.45, -0.45, -0.45]))
    assert advice.strategy == "partial" and advice.overrides["strategy.freeze_blocks"] == 3
    assert "3 of 6 blocks worth adapting: LogME rises until block 3" in advice.reasons["strategy"]
    late = advise(_evidence())  # flat from block 4 of 6: still two blocks, a third of them, adapt
    assert late.overrides["strategy.freeze_blocks"] == 4 and "a third of them at least" in late.reasons["strategy"]
    assert advice.overrides["optim.lr"] == 1e-4 and "head.pooling" not in advice.overrides  # declared: auto


def test_a_curve_still_rising_adapts_every_block_with_lora() -> None:
    advice = advise(_evidence(logme=[-1.0, -0.9, -0.8, -0.7, -0.6, -0.5, -0.4]))
    assert advice.strategy == "lora" and advice.overrides["optim.lr"] == 1e-3
    assert "own default learning rate" in advice.reasons["optim.lr"]


def test_features_at_the_ceiling_or_a_handful_of_examples_mean_the_head_alone() -> None:
    assert advise(_evidence(probe=PROBE_CEILING + 0.01)).strategy == "head"
    few = advise(_evidence(per_class={"a": MIN_PER_CLASS - 3, "b": MIN_PER_CLASS}, imbalance_ratio=None))
    assert few.strategy == "head" and "6 training examples per class" in few.reasons["strategy"]


def test_little_data_is_steered_by_prefix_tuning_and_imbalance_weights_the_loss() -> None:
    little = advise(_evidence(per_class={"a": 19, "b": LOW_DATA_PER_CLASS + 10}, imbalance_ratio=60 / 19))
    assert little.strategy == "prefix_tuning" and "40 training examples per class" in little.reasons["strategy"]
    assert little.overrides["optim.lr"] > 1e-3  # prefix tuning's own default, spelled out
    assert little.overrides["loss.class_weights"] == "balanced" and "3.2x the smallest" in little.reasons["loss.class_weights"]


def test_without_declared_pooling_the_head_pools_as_logme_prefers() -> None:
    cls = advise(_evidence(declared_pooling=None, logme_cls=-0.3))
    assert cls.overrides["head.type"] == "linear" and cls.overrides["head.pooling"] == "cls"
    mean = advise(_evidence(declared_pooling=None, logme_cls=-0.9))
    assert mean.overrides["head.pooling"] == "mean"


def test_the_expected_range_holds_the_probe_and_lifts_for_adapting_strategies() -> None:
    head = advise(_evidence(probe=PROBE_CEILING + 0.01, probe_spread=0.005))
    assert head.expected[0] < PROBE_CEILING + 0.01 < head.expected[1] <= 1.0
    partial = advise(_evidence())
    assert partial.expected[0] <= 0.85 - 0.02 + 1e-9 and partial.expected[1] > 0.85 + 0.02
