"""benchmarks/distill.py stays runnable: the teacher's and every student's config validates, labels-only and
distilled, with the same budget."""

from __future__ import annotations

import argparse

from tests.conftest import load_benchmark
from tunelab.catalog import parse_config


def test_every_leg_validates_with_one_budget() -> None:
    bench = load_benchmark("distill")
    args = argparse.Namespace(limit=1000, max_length=128, epochs=4, lr=5e-5, temperature=2.0, alpha=0.5)
    assert parse_config(bench.leg_config("bbc-news", bench.TEACHER, args, None, 1e-4)).optim.lr == 1e-4
    teacher = parse_config(bench.leg_config("bbc-news", bench.TEACHER, args, None, 5e-5))
    assert teacher.model.num_blocks is None and teacher.strategy.distill is None
    for model in bench.STUDENTS.values():
        alone = parse_config(bench.leg_config("bbc-news", model, args, None))
        taught = parse_config(bench.leg_config("bbc-news", model, args, "runs/teacher"))
        assert taught.strategy.distill.teacher == "runs/teacher" and taught.strategy.distill.alpha == 0.5
        assert alone.strategy.distill is None
        for config in (alone, taught):
            assert (config.optim.lr, config.train.epochs, config.data.limit) == (teacher.optim.lr, 4, 1000)
    assert parse_config(bench.leg_config("bbc-news", bench.STUDENTS["minilm-cut3"], args, None)).model.num_blocks == 3
