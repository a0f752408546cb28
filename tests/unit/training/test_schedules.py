from __future__ import annotations

import pytest

from tunelab.config.schema import ScheduleConfig
from tunelab.training.schedules import lr_multiplier, warmup_steps_for


def curve(name: str, total: int = 100, **kw) -> list[float]:
    config = ScheduleConfig(name=name, **kw)
    return [lr_multiplier(config, s, total) for s in range(total)]


def test_linear_warmup_then_decay_to_zero() -> None:
    values = curve("linear", warmup_ratio=0.1)
    assert values[0] < values[5] < values[9] <= 1.0
    assert max(values) == pytest.approx(1.0)
    assert values[-1] < 0.02 and all(a >= b for a, b in zip(values[10:], values[11:]))


def test_constant_and_cosine() -> None:
    assert set(curve("constant")) == {1.0}
    values = curve("cosine", warmup_steps=0)
    assert values[0] == pytest.approx(1.0) and values[50] == pytest.approx(0.5, abs=0.02) and values[-1] < 0.01


def test_slanted_triangular_rises_fast_and_falls_to_ratio() -> None:
    values = curve("slanted_triangular", warmup_ratio=0.1, stlr_ratio=32)
    peak = values.index(max(values))
    assert peak == 10 and values[0] == pytest.approx(1 / 32)
    assert values[-1] == pytest.approx(1 / 32, rel=0.2)


def test_warmup_steps_capped() -> None:
    assert warmup_steps_for(ScheduleConfig(warmup_steps=500), 100) == 100
