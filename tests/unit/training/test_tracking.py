"""Experiment tracking, read back with the libraries that own the formats: TensorBoard's EventAccumulator finds
the scalars metrics.jsonl logs, at the same steps and values; MlflowClient finds the run, its params, its metric
histories and its artifacts; a compare nests its rows under one parent run; a tracker that is not installed
fails validation with its install command; a failed run is marked failed; ranks other than 0 write nothing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import train_via_cli
from tunelab.catalog import parse_config
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.training.callbacks.base import Control, TrainState
from tunelab.training.callbacks.tracking import (RECORD, TENSORBOARD_DIR, MlflowCallback, TensorBoardCallback,
                                                 abort_tracking, flatten_config, metric_key, open_tracking)

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _reader(store: Path) -> Any:
    """MlflowClient on the file store `store` (MLflow >= 3.7 opens one only when asked to, as tunelab does)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=store.as_uri())


def _raw(tiny_bert: Path, sentiment_csv: Path, out: Path, store: Path) -> dict[str, Any]:
    return {"model": str(tiny_bert), "data": {"train": str(sentiment_csv), "max_length": 16, "validation_split": 0.2,
                                              "test_split": 0.2},
            "strategy": {"name": "full"}, "optim": {"lr": 3e-3},
            "train": {"epochs": 2, "batch_size": 8, "seed": 0, "precision": "fp32"}, "output": str(out),
            "tracking": {"tensorboard": True, "mlflow": {"tracking_uri": store.as_uri(), "experiment": "tiny"}}}


@pytest.fixture(scope="module")
def tracked_run(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One tiny run with both trackers: (run directory, MLflow file store)."""
    folder = tmp_path_factory.mktemp("tracked")
    run, store = folder / "run", folder / "mlruns"
    train_via_cli(_raw(tiny_bert, sentiment_csv, run, store), folder=folder)
    return run, store


def _lines(run: Path, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def _scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_scalars_are_the_metrics_log(tracked_run: tuple[Path, Path]) -> None:
    run, _ = tracked_run
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    train, validation = _lines(run, "train"), _lines(run, "validation")
    assert len(train) > 2 and len(validation) == 2
    assert _scalars(events, "train/loss") == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
    assert {"train/grad_norm", "train/examples_per_s"} <= tags
    lr_tags = sorted(t for t in tags if t.startswith("train/lr/"))
    assert lr_tags and all(len(events.Scalars(t)) == len(train) for t in lr_tags)
    # the head's group has the largest LR, the one metrics.jsonl logs
    largest = [max(events.Scalars(t)[i].value for t in lr_tags) for i in range(len(train))]
    assert largest == [pytest.approx(r["lr"], rel=1e-6) for r in train]
    for name in ("macro_f1", "accuracy", "loss"):
        assert _scalars(events, f"validation/{name}") == [(r["step"], pytest.approx(r[name], rel=1e-6))
                                                           for r in validation]
    test = json.loads((run / "test_metrics.json").read_text())
    assert _scalars(events, "test/macro_f1") == [(train[-1]["step"], pytest.approx(test["macro_f1"], rel=1e-6))]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def _the_run(store: Path) -> Any:
    client = _reader(store)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_run_params_metrics_and_artifacts(tracked_run: tuple[Path, Path]) -> None:
    run, store = tracked_run
    client, found = _the_run(store)
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert json.loads((run / RECORD).read_text())["mlflow"]["run_id"] == found.info.run_id
    config = parse_config(yaml.safe_load((run / "config.yaml").read_text()))
    assert found.data.params == {k: str(v) for k, v in flatten_config(config).items()}
    assert found.data.params["optim.lr"] == "0.003" and found.data.params["tracking.tensorboard"] == "True"
    train, validation = _lines(run, "train"), _lines(run, "validation")
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(r["step"], r["loss"]) for r in train]
    f1 = client.get_metric_history(found.info.run_id, "validation/macro_f1")
    assert sorted((m.step, m.value) for m in f1) == [(r["step"], r["macro_f1"]) for r in validation]
    assert any(key.startswith("train/lr/") for key in found.data.metrics)
    test = json.loads((run / "test_metrics.json").read_text())
    assert found.data.metrics["test/macro_f1"] == test["macro_f1"]
    assert found.data.metrics["test/accuracy"] == test["accuracy"]
    top = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"model", "config.yaml"} <= top
    model = {Path(a.path).name for a in client.list_artifacts(found.info.run_id, "model")}
    assert model == {p.name for p in (run / "model").iterdir()}
    assert found.data.tags["tunelab.run_dir"] == str(run.resolve())


def test_compare_nests_rows_under_a_parent(tiny_config: dict, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    tiny_config["train"].update(epochs=1, precision="fp32")
    tiny_config["tracking"] = {"mlflow": {"tracking_uri": store.as_uri(), "experiment": "cmp"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config), encoding="utf-8")
    result = CliRunner().invoke(app, ["compare", str(path), "--out", str(tmp_path / "cmp"),
                                      "--strategies", "head,full"])
    assert result.exit_code == 0, result.output
    client = _reader(store)
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "compare cmp" and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["full", "head"] and len(runs) == 3
    assert all(r.info.status == "FINISHED" and "test/macro_f1" in r.data.metrics for r in children)
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {"compare.json", "compare.csv"}


@pytest.mark.parametrize("absent, key, command", [
    ("tensorboard", "tracking.tensorboard", 'pip install "tensorboard>=2.14"'),
    ("mlflow", "tracking.mlflow", 'pip install "mlflow-skinny>=2.16"'),
])
def test_a_missing_tracker_fails_validation(monkeypatch: pytest.MonkeyPatch, absent: str, key: str,
                                            command: str) -> None:
    monkeypatch.setitem(sys.modules, absent, None)
    raw = {"data": {"builtin": "bbc-news"}, "tracking": {"tensorboard": True, "mlflow": True}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    lines = [line for line in str(caught.value).splitlines() if "tracking" in line]
    assert len(lines) == 1 and key in lines[0] and command in lines[0] and "tunelab[tracking]" in lines[0]


def test_tracking_section_defaults_and_shorthand() -> None:
    config = parse_config({"data": {"builtin": "bbc-news"}, "tracking": {"mlflow": True}})
    assert config.tracking.mlflow.tracking_uri == "file:./mlruns" and config.tracking.mlflow.experiment == "tunelab"
    assert not config.tracking.tensorboard
    assert parse_config({"data": {"builtin": "bbc-news"}}).tracking.mlflow is None
    with pytest.raises(ConfigError, match="tracking.mlflow.experimnt"):
        parse_config({"data": {"builtin": "bbc-news"}, "tracking": {"mlflow": {"experimnt": "x"}}})
    assert metric_key("train", "lr", "lr=0.003 no_decay") == "train/lr/lr_0.003_no_decay"


def _state(rank: int = 0, step: int = 0) -> TrainState:
    return TrainState(epoch=0, epochs=1, step=step, total_steps=4, examples_seen=8 * step, loss=0.5, lr=1e-3,
                      elapsed=1.0, lrs={"lr=0.001": 1e-3}, grad_norm=2.0, rank=rank)


def _tracking(tmp_path: Path) -> tuple[Any, Path]:
    store = tmp_path / "mlruns"
    config = parse_config({"data": {"builtin": "bbc-news"}, "tracking": {
        "tensorboard": True, "mlflow": {"tracking_uri": store.as_uri(), "experiment": "unit"}}})
    staging = tmp_path / ".run.staging"
    staging.mkdir()
    return open_tracking(config, staging, tmp_path / "run"), store


def test_only_rank_zero_writes(tmp_path: Path) -> None:
    tracking, store = _tracking(tmp_path)
    assert [type(c) for c in tracking.callbacks] == [TensorBoardCallback, MlflowCallback]
    for callback in tracking.callbacks:
        for event in ("on_fit_start", "on_step_end", "on_evaluate", "on_fit_end"):
            getattr(callback, event)(_state(rank=1, step=1), Control())
    assert not (tmp_path / ".run.staging" / TENSORBOARD_DIR).exists() and not store.exists()
    assert not (tmp_path / ".run.staging" / RECORD).exists()


def test_a_failed_run_is_marked_failed(tmp_path: Path) -> None:
    tracking, store = _tracking(tmp_path)
    for callback in tracking.callbacks:
        callback.on_fit_start(_state(), Control())
        callback.on_step_end(_state(step=1), Control())
    abort_tracking(tracking, RuntimeError("boom"))
    client = _reader(store)
    run = client.get_run(json.loads((tmp_path / ".run.staging" / RECORD).read_text())["mlflow"]["run_id"])
    assert run.info.status == "FAILED" and run.data.metrics["train/loss"] == 0.5
    assert run.data.metrics["train/lr/lr_0.001"] == 1e-3 and run.data.metrics["train/grad_norm"] == 2.0


def test_a_resumed_run_continues_its_mlflow_run(tiny_bert: Path, sentiment_csv: Path, tmp_path: Path) -> None:
    """SIGTERM after step 5: the MLflow run is marked KILLED and kept; --resume reopens it, so one run holds
    every step once, as metrics.jsonl does, and TensorBoard's events match too."""
    import subprocess

    run, store = tmp_path / "run", tmp_path / "mlruns"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_raw(tiny_bert, sentiment_csv, run, store)), encoding="utf-8")
    killer = Path(__file__).with_name("kill_run.py")
    src = Path(__file__).resolve().parents[3] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_ALLOW_FILE_STORE", None)   # tunelab opts in to the file store the config names
    first = subprocess.run([sys.executable, str(killer), "term:5", "train", str(config)], capture_output=True,
                           text=True, env=env, timeout=300)
    assert first.returncode != 0 and not run.exists(), first.stderr
    client = _reader(store)
    run_id = json.loads((tmp_path / ".run.staging" / RECORD).read_text())["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    train_via_cli(config, "--resume")
    _, found = _the_run(store)
    assert found.info.run_id == run_id and found.info.status == "FINISHED"
    train = _lines(run, "train")
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")) == \
        [(r["step"], r["loss"]) for r in train]
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    assert _scalars(events, "train/loss") == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
