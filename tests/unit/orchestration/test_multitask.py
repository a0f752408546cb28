"""Multi-task runs end to end on the tiny BERT and two toy data sets of different label spaces (sentiment:
pos / neg; topic: three classes), through `tunelab train`, the one run_one and Trainer: both heads train on one
shared backbone, each task is scored with its own metrics, predict / eval load one head, a one-task run equals
the single-task run of that task, a killed run resumes bit-identical, PEFT and the activation cache apply."""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import write_csv
from tunelab.artifacts.model_io import load_run
from tunelab.catalog import load_config
from tunelab.cli import app
from tunelab.serving.predict import evaluate_file
from tunelab.serving.predictor import load_predictor
from tunelab.tasks.multitask import MultiTask
from tunelab.training.device import seed_everything

runner = CliRunner()
KILLER = Path(__file__).resolve().parents[1] / "training" / "kill_run.py"
SRC = Path(__file__).resolve().parents[3] / "src"
TOPICS = {"cinema": ["movie", "film"], "writing": ["plot", "story"], "people": ["acting", "very"]}


@pytest.fixture(scope="module")
def topic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 short texts, three topics by their two topic words; a label column of its own name."""
    rng, rows = random.Random(1), []
    for i in range(90):
        label = list(TOPICS)[i % 3]
        words = rng.sample(["the", "a", "was", "is", "and", "really"], 3) + rng.sample(TOPICS[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topic": label, "score": str(float(i % 3))})
    return write_csv(tmp_path_factory.mktemp("topic") / "topic.csv", rows)


def multi_raw(tiny_bert: Path, sentiment_csv: Path, topic_csv: Path, **changes: object) -> dict:
    split = {"max_length": 16, "validation_split": 0.2, "test_split": 0.2}
    raw = {"model": str(tiny_bert),
           "tasks": [{"name": "sent", "data": {"train": str(sentiment_csv), **split}},
                     {"name": "topic", "data": {"train": str(topic_csv), "label_column": "topic", **split},
                      "head": {"type": "mlp", "hidden_size": 16}}],
           "mixing": {"name": "temperature", "temperature": 2.0},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3},
           "train": {"epochs": 2, "batch_size": 8, "seed": 0, "num_threads": 1, "precision": "fp32",
                     "checkpoint_every_steps": 5, "keep_checkpoints": 2}}
    raw.update(copy.deepcopy(changes))
    return raw


def train(raw: dict, folder: Path, name: str, *extra: str) -> Path:
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["train", str(config), "--out", str(folder / name), *extra])
    assert result.exit_code == 0, result.output
    return folder / name


@pytest.fixture(scope="module")
def two_task_run(tiny_bert: Path, sentiment_csv: Path, topic_csv: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("multitask")
    raw = multi_raw(tiny_bert, sentiment_csv, topic_csv)
    return train(raw, folder, "run"), raw


def test_both_heads_train_on_one_shared_backbone(two_task_run: tuple[Path, dict], tiny_bert: Path) -> None:
    run, _ = two_task_run
    config = load_config(run / "config.yaml")
    labels = {name: head["labels"] for name, head in json.loads((run / "labels.json").read_text())["heads"].items()}
    assert labels == {"sent": ["neg", "pos"], "topic": ["cinema", "people", "writing"]}
    seed_everything(config.train.seed)  # the model the run started from
    start = MultiTask.of(config, labels).build_model(config.model, tiny_bert)
    heads = load_file(str(run / "model" / "tunelab_head.safetensors"))
    assert {k.split(".", 1)[0] for k in heads} == {"sent", "topic"}
    assert heads["topic.proj.0.weight"].shape == (16, 32) and heads["sent.proj.weight"].shape == (2, 32)
    initial = start.head.state_dict()
    assert set(heads) == set(initial)
    for key, value in heads.items():  # every tensor of both heads moved
        assert not torch.equal(value, initial[key]), key
    backbone = load_file(str(run / "model" / "model.safetensors"))
    base = load_file(str(tiny_bert / "model.safetensors"))
    assert set(backbone) == set(base)  # the backbone, once: no head in it, no second copy
    assert any(not torch.equal(backbone[k], base[k]) for k in base)  # and trained (full)
    assert not list((run / "model").glob("*/*.safetensors"))


def test_each_task_is_scored_with_its_own_metrics(two_task_run: tuple[Path, dict]) -> None:
    run, _ = two_task_run
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "validation"]
    assert len(epochs) == 2
    for record in epochs:
        assert record["macro_f1"] == pytest.approx((record["sent/macro_f1"] + record["topic/macro_f1"]) / 2)
        assert record["loss"] == pytest.approx((record["sent/loss"] + record["topic/loss"]) / 2)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["best_metric"] == max(r["macro_f1"] for r in epochs)  # the mean picks the best epoch
    assert set(manifest["data_sha256"]) == {f"{t}/{s}" for t in ("sent", "topic") for s in ("train", "validation", "test")}
    test = json.loads((run / "test_metrics.json").read_text())
    assert set(test["tasks"]) == {"sent", "topic"} and "per_class" in test["tasks"]["topic"]
    assert test["accuracy"] == pytest.approx((test["tasks"]["sent"]["accuracy"] + test["tasks"]["topic"]["accuracy"]) / 2)
    for name, n in (("sent", 24), ("topic", 18)):  # 20% of 120 and of 90
        assert len(read_rows(run / "predictions" / f"{name}.csv")) == n


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_and_eval_load_one_head(two_task_run: tuple[Path, dict], tmp_path: Path) -> None:
    run, _ = two_task_run
    rows = read_rows(run / "predictions" / "topic.csv")
    predictor = load_predictor(run, head="topic")
    assert predictor.label_names == ["cinema", "people", "writing"] and predictor.config.task == "classification"
    from tunelab.data.records import Record

    got = predictor.predict([Record(text=r["text"], label=None, where="") for r in rows])
    assert got.values == [r["prediction"] for r in rows]  # as the run scored its test split
    assert got.scores[:, 0].tolist() == pytest.approx([float(r["prob_cinema"]) for r in rows], abs=2e-6)
    test_file = write_csv(tmp_path / "sent-test.csv", [{"text": r["text"], "label": r["label"]}
                                                        for r in read_rows(run / "predictions" / "sent.csv")])
    scored = evaluate_file(run, test_file, head="sent")
    section = json.loads((run / "test_metrics.json").read_text())["tasks"]["sent"]
    assert scored["accuracy"] == section["accuracy"] and scored["macro_f1"] == section["macro_f1"]
    out = runner.invoke(app, ["predict", str(run), "--head", "sent", "--text", "good great movie"])
    assert out.exit_code == 0 and '"prediction": "pos"' in out.output or '"prediction": "neg"' in out.output
    assert runner.invoke(app, ["eval", str(run), "--head", "sent", "--data", str(test_file)]).exit_code == 0


@pytest.mark.parametrize("argv, expected", [
    (["predict", "{run}", "--text", "x"], "a multi-task run with heads sent, topic"),
    (["predict", "{run}", "--head", "plot", "--text", "x"], "--head plot: {run} has no head 'plot'; its heads: sent, topic"),
    (["eval", "{run}", "--data", "x.csv"], "load one head with --head NAME"),
    (["export", "{run}", "--format", "onnx", "--out", "{run}-onnx"], "export, serve, merge and the other commands"),
])
def test_a_multi_task_run_without_a_known_head_is_refused(two_task_run: tuple[Path, dict], argv: list[str],
                                                          expected: str) -> None:
    run, _ = two_task_run
    result = runner.invoke(app, [a.format(run=run) for a in argv])
    assert result.exit_code == 2 and expected.format(run=run) in " ".join(result.output.split()), result.output


def test_compare_refuses_a_multi_task_config(two_task_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, raw = two_task_run
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["compare", str(tmp_path / "c.yaml"), "--strategies", "head", "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "compare: a multi-task config (tasks:)" in result.output


def test_one_task_equals_its_single_task_run(tiny_bert: Path, sentiment_csv: Path, topic_csv: Path,
                                             tmp_path: Path) -> None:
    """`tasks:` with one entry trains the single-task run of that task with that head, bit for bit."""
    raw = multi_raw(tiny_bert, sentiment_csv, topic_csv)
    raw["tasks"] = raw["tasks"][1:]
    multi = train(raw, tmp_path, "multi")
    entry = raw.pop("tasks")[0]
    raw.pop("mixing")
    single = train({**raw, "task": entry.get("task", "classification"), "data": entry["data"], "head": entry["head"]},
                   tmp_path, "single")
    ours, theirs = (load_file(str(run / "model" / "model.safetensors")) for run in (multi, single))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    heads = load_file(str(multi / "model" / "tunelab_head.safetensors"))
    alone = load_file(str(single / "model" / "tunelab_head.safetensors"))
    assert all(torch.equal(heads[f"topic.{k}"], alone[k]) for k in alone)
    section = json.loads((multi / "test_metrics.json").read_text())["tasks"]["topic"]
    alone_metrics = json.loads((single / "test_metrics.json").read_text())
    alone_metrics.pop("forgetting")  # the single run's forgetting meter (off in a multi-task run)
    assert section == alone_metrics
    result = runner.invoke(app, ["predict", str(single), "--head", "topic", "--text", "x"])
    assert result.exit_code == 2 and "is a single-task run (one head)" in result.output


def test_a_killed_run_resumes_bit_identical(two_task_run: tuple[Path, dict], tmp_path: Path) -> None:
    reference, raw = two_task_run
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(KILLER), "step:12", "train", str(config), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == -9, done.stderr  # killed mid-epoch 1 (16 batches an epoch), after the step-10 checkpoint
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--resume"])
    assert result.exit_code == 0 and "resuming from" in result.output, result.output
    for name in ("model.safetensors", "tunelab_head.safetensors"):
        ours, theirs = (load_file(str(run / "model" / name)) for run in (tmp_path / "run", reference))
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text()) == \
        json.loads((reference / "test_metrics.json").read_text())


def test_lora_trains_every_head_beside_the_adapter(tiny_bert: Path, sentiment_csv: Path, topic_csv: Path,
                                                   tmp_path: Path) -> None:
    """A PEFT method on the backbone, a head per task (a regression head too): the adapter is saved once with
    every head; each head loads on the base with the adapter."""
    raw = multi_raw(tiny_bert, sentiment_csv, topic_csv, strategy={"name": "lora", "lora": {"target_modules": ["query", "value"]}},
                    mixing={"name": "proportional"})
    raw["tasks"][1].update(task="regression", data={**raw["tasks"][1]["data"], "label_column": "score"})
    run = train(raw, tmp_path, "lora")
    assert load_config(run / "config.yaml").early_stopping.metric == "loss"  # no default metric in common
    files = {p.name for p in (run / "model").iterdir()}
    assert {"adapter_model.safetensors", "tunelab_head.safetensors"} <= files and "model.safetensors" not in files
    heads = load_file(str(run / "model" / "tunelab_head.safetensors"))
    assert heads["sent.proj.weight"].shape == (2, 32) and heads["topic.proj.3.weight"].shape == (1, 16)
    section = json.loads((run / "test_metrics.json").read_text())["tasks"]["topic"]
    assert "mse" in section and "macro_f1" not in section
    regression = load_run(run, "topic")
    assert regression.config.task == "regression" and regression.label_names == []
    result = runner.invoke(app, ["predict", str(run), "--head", "topic", "--text", "the plot story"])
    assert result.exit_code == 0 and '"prediction":' in result.output


def test_the_activation_cache_serves_each_task(tiny_bert: Path, sentiment_csv: Path, topic_csv: Path,
                                               tmp_path: Path) -> None:
    """strategy head: the frozen backbone's output is cached per task's split and read back, and the run's test
    predictions equal a recomputing forward pass's (predict loads the head without the cache)."""
    raw = multi_raw(tiny_bert, sentiment_csv, topic_csv, strategy={"name": "head"})
    raw["train"]["cache_dir"] = str(tmp_path / "cache")
    run = train(raw, tmp_path, "head")
    stats = json.loads((run / "manifest.json").read_text())["activation_cache"]
    assert stats["built_entries"] == 6 and stats["served_batches"] > 0  # train, validation, test of both tasks
    rows = read_rows(run / "predictions" / "sent.csv")
    from tunelab.data.records import Record

    got = load_predictor(run, head="sent").predict([Record(text=r["text"], label=None, where="") for r in rows])
    assert got.scores[:, 1].tolist() == pytest.approx([float(r["prob_pos"]) for r in rows], abs=2e-6)
