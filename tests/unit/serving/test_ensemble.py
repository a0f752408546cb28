"""`tunelab predict --ensemble`: the mean of the members' class probabilities and its most probable class, and
the refusals (one run, runs of other label sets, several runs without --ensemble)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import sentiment_rows, train_via_cli, write_csv
from tunelab.cli import app


def _train(tiny_bert: Path, folder: Path, name: str, seed: int, rows: list[dict]) -> Path:
    config = {"model": str(tiny_bert), "data": {"train": str(write_csv(folder / f"{name}.csv", rows)), "max_length": 16},
              "optim": {"lr": 3e-3}, "train": {"epochs": 2, "batch_size": 8, "seed": seed},
              "forgetting": {"measure": False}, "output": str(folder / name)}
    train_via_cli(config, folder=folder)
    return folder / name


@pytest.fixture(scope="module")
def runs(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("ensemble")
    rows = sentiment_rows(80)
    other = [{"text": r["text"], "label": {"pos": "good", "neg": "bad"}[r["label"]]} for r in rows]
    return (_train(tiny_bert, folder, "a", 0, rows), _train(tiny_bert, folder, "b", 1, rows),
            _train(tiny_bert, folder, "other", 0, other))


def _predict(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.strip().splitlines()]


def test_the_ensemble_is_the_mean_of_its_members(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, _ = runs
    inputs = write_csv(tmp_path / "in.csv", [{"text": r["text"]} for r in sentiment_rows(20, seed=3)])
    mean = _predict("--ensemble", str(a), str(b), "--input", str(inputs))
    alone = [_predict(str(run), "--input", str(inputs)) for run in (a, b)]
    assert len(mean) == 20
    for row, ra, rb in zip(mean, *alone):
        for name, p in row["probabilities"].items():
            assert p == pytest.approx((ra["probabilities"][name] + rb["probabilities"][name]) / 2, abs=2e-6)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)
    assert any(ra["probabilities"] != rb["probabilities"] for ra, rb in zip(*alone))  # two different members


@pytest.mark.parametrize("args, line", [
    (["--ensemble", "A"], "give two or more RUN_DIRs"),
    (["A", "B"], "2 RUN_DIRs given; add --ensemble"),
    (["--ensemble", "A", "OTHER"], "must share one label set"),
])
def test_what_an_ensemble_refuses(runs: tuple[Path, Path, Path], args: list[str], line: str) -> None:
    a, b, other = runs
    named = [{"A": str(a), "B": str(b), "OTHER": str(other)}.get(x, x) for x in args]
    result = CliRunner().invoke(app, ["predict", *named, "--text", "a fine film"])
    assert result.exit_code != 0 and line in " ".join(result.output.split()), result.output
