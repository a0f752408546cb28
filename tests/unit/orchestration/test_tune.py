"""`tunelab tune` on the tiny model: an Optuna study in DIR/study.db that optuna opens, trials as run
directories selected on validation, the test split scored once for the best, one model build for all
trials, pruning through the callback, --resume, and search spaces validated like a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunelab.cli import app

optuna = pytest.importorskip("optuna")
runner = CliRunner()


def _tune(config: dict, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "search"
    result = runner.invoke(app, ["tune", str(path), "--out", str(out), *args])
    return result.exit_code, result.output, out


@pytest.fixture
def config(tiny_config: dict) -> dict:
    tiny_config["train"]["precision"] = "fp32"
    tiny_config["report"] = True  # the best trial's report.html is linked from the search's page
    tiny_config["strategy"] = {"name": "head"}
    return tiny_config


def test_study_trials_and_best(config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.tasks.classification import ClassificationTask

    builds = []
    real = ClassificationTask.build_model
    monkeypatch.setattr(ClassificationTask, "build_model", lambda self, *a, **k: builds.append(a[3]) or real(self, *a, **k))
    code, output, out = _tune(config, tmp_path, "--trials", "3", "--sampler", "random", "--pruner", "none")
    assert code == 0, output
    base = [d for d in builds if "trials" not in str(d)]
    assert len(base) == 1  # every trial copies the base model built once; none loads it from disk again
    study = optuna.load_study(study_name="tunelab", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    summary = json.loads((out / "tune.json").read_text())
    best = summary["best"]["number"]
    assert best == study.best_trial.number and summary["best"]["value"] == study.best_value
    tested = sorted(p.parent.name for p in (out / "trials").glob("*/test_metrics.json"))
    assert tested == [str(best)]  # the test split is scored once, for the best trial only
    reported = sorted(p.parent.name for p in (out / "trials").glob("*/report.html"))
    assert reported == [str(best)]  # a trial's plots are drawn only for the trial that is kept, with its test
    assert "no test_metrics.json" not in (out / "trials" / str(best) / "report.html").read_text()
    assert "accuracy" in summary["best"]["test"]
    assert {"optim.lr", "schedule.warmup_ratio", "optim.weight_decay"} <= set(study.best_params)
    from tunelab.catalog import load_config

    page = (out / "report.html").read_text()
    assert all(f'id="{name}"' in page for name in ("history", "slice", "trials")) and "<svg" in page
    assert isinstance(summary["importances"], dict)
    chosen = load_config(out / "best.yaml")
    assert chosen.optim.lr == pytest.approx(study.best_params["optim.lr"])


def test_resume_continues_the_study(config: dict, tmp_path: Path) -> None:
    code, output, out = _tune(config, tmp_path, "--trials", "2", "--sampler", "random")
    assert code == 0, output
    study = optuna.load_study(study_name="tunelab", storage=f"sqlite:///{out / 'study.db'}")
    study.ask()  # a trial a killed sweep left RUNNING
    code, output, _ = _tune(config, tmp_path, "--trials", "2")
    assert code != 0 and "--resume" in output
    code, output, _ = _tune(config, tmp_path, "--trials", "3", "--sampler", "random", "--resume")
    assert code == 0, output
    states = [t.state.name for t in optuna.load_study(study_name="tunelab", storage=f"sqlite:///{out / 'study.db'}").trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1


def test_space_problems_are_reported_together(config: dict, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"optim.lr": {"low": 1e-3, "high": 1e-5, "log": True},
                                     "optim.momentum": {"low": 0.1, "high": 0.9},
                                     "train.epochs": {"choices": [1, 2]}}), encoding="utf-8")
    code, output, _ = _tune(config, tmp_path, "--trials", "1", "--space", str(space))
    assert code == 2 and "optim.lr" in output and "low must be below high" in output
    space.write_text(yaml.safe_dump({"optim.momentum": {"low": 0.1, "high": 0.9},
                                     "strategy.freeze_blocks": {"low": -2, "high": 1}}), encoding="utf-8")
    code, output, _ = _tune(config, tmp_path, "--trials", "1", "--space", str(space))
    text = " ".join(output.split())
    assert code == 2 and "optim.momentum" in text and "strategy.freeze_blocks" in text, output


def test_pruning_callback_stops_the_trial() -> None:
    from tunelab.training.callbacks.base import Control, TrainState
    from tunelab.training.callbacks.pruning import PruningCallback

    class Trial:
        reports: list = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((step, value))

        def should_prune(self) -> bool:
            return len(self.reports) >= 2

    trial, control = Trial(), Control()
    callback = PruningCallback(trial, "macro_f1")
    for epoch in range(2):
        callback.on_evaluate(TrainState(epoch=epoch, epochs=5, step=0, total_steps=1, examples_seen=0, loss=0.0, lr=0.0,
                                        elapsed=0.0, metrics={"macro_f1": 0.5 + epoch}), control)
    assert trial.reports == [(0, 0.5), (1, 1.5)] and control.stop_training and callback.pruned_at == 2


def test_default_partial_space_keeps_the_lower_half_frozen(config: dict) -> None:
    """A trial costs what its depth trains: the default range is half the blocks to all but one frozen."""
    from tunelab.catalog import parse_config
    from tunelab.orchestration.tune_space import default_space

    partial = parse_config({**config, "strategy": {"name": "partial", "freeze_blocks": 1}})
    depth = default_space(partial, 6)["strategy.freeze_blocks"]
    assert (depth.low, depth.high, depth.is_int) == (3, 5, True)
    assert default_space(partial, 7)["strategy.freeze_blocks"].low == 3
    assert "strategy.freeze_blocks" not in default_space(partial, 2)  # one depth only: the config's own
    assert "strategy.layerwise_lr_decay" in default_space(partial, 6)


def test_a_pruned_trial_keeps_no_weights(config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pruned trial is never selected: its folder keeps config, metrics and manifest, not the model."""
    import tunelab.orchestration.tune as tune_module

    class AfterTheFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:  # type: ignore[no-untyped-def]
            return trial.number >= 1

    monkeypatch.setattr(tune_module, "_pruner", lambda name: AfterTheFirst())
    config["train"]["epochs"] = 2
    code, output, out = _tune(config, tmp_path, "--trials", "3", "--sampler", "random")
    assert code == 0, output
    states = json.loads((out / "tune.json").read_text())["trials"]
    assert [t["state"] for t in states] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert (out / "trials" / "0" / "model").is_dir()
    for n in ("1", "2"):
        assert not (out / "trials" / n / "model").exists() and (out / "trials" / n / "manifest.json").is_file()
