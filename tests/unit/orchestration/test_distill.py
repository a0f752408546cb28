"""Distillation end to end on the tiny model: a student (cut to one block) learns from a teacher run's logits,
which are computed once and read back by the next run and by compare rows; a student whose teacher is missing,
of another task or of another label set is refused before anything is written."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from tests.conftest import sentiment_rows, train_via_cli, write_csv
from tunelab.cli import app
from tunelab.paths import teacher_logits_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def teacher(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `full` run on the tiny BERT: the teacher every student here learns from."""
    folder = tmp_path_factory.mktemp("teacher")
    raw = {"model": str(tiny_bert), "data": {"train": str(sentiment_csv), "max_length": 16, "validation_split": 0.2,
                                             "test_split": 0.2},
           "optim": {"lr": 3e-3}, "train": {"epochs": 2, "batch_size": 8, "seed": 0, "precision": "fp32"},
           "output": str(folder / "run")}
    train_via_cli(raw, folder=folder)
    return folder / "run"


def student(config: dict, teacher: Path, **distill) -> dict:
    raw = copy.deepcopy(config)
    raw["model"] = {"name": config["model"], "num_blocks": 1}
    raw["strategy"] = {"name": "full", "distill": {"teacher": str(teacher), "temperature": 2.0, "alpha": 0.7, **distill}}
    raw["train"]["precision"] = "fp32"
    return raw


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_student_learns_from_cached_teacher_logits(tiny_config: dict, teacher: Path, tmp_path: Path) -> None:
    raw = student(tiny_config, teacher)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    first = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    train_rows = 72  # 120 rows, 20% validation and 20% test held out
    assert f"distillation: {train_rows} teacher logits computed" in first.output
    report = manifest(tmp_path / "a")["distill"]
    assert report["teacher_logits"]["computed"] == train_rows and report["teacher_logits"]["reused"] == 0
    assert report["alpha"] == 0.7 and report["distill_calls"] == 2 * 9 and report["last_distill_loss"] >= 0
    entry = Path(report["teacher_logits"]["file"])
    assert entry.parent == teacher_logits_dir() and load_file(str(entry))["logits"].shape == (train_rows, 2)

    second = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert "teacher logits read from the cache" in second.output
    assert manifest(tmp_path / "b")["distill"]["teacher_logits"] == {**report["teacher_logits"], "computed": 0,
                                                                    "reused": train_rows,
                                                                    "seconds": manifest(tmp_path / "b")["distill"]
                                                                    ["teacher_logits"]["seconds"]}
    # the same run twice: the cached logits are the computed ones, so the students are equal
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the student is a one-block model that transformers loads as one
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "a" / "model")
    assert loaded.config.num_hidden_layers == 1 and len(loaded.bert.encoder.layer) == 1


def test_distillation_changes_training_and_alpha_zero_is_the_label_run(tiny_config: dict, teacher: Path,
                                                                       tmp_path: Path) -> None:
    """alpha 0 trains exactly as the run without distillation (the teacher's term weighs nothing); alpha 1 not."""
    labels_only = student(tiny_config, teacher)
    labels_only["strategy"].pop("distill")
    runs = {"plain": labels_only, "alpha0": student(tiny_config, teacher, alpha=0.0),
            "alpha1": student(tiny_config, teacher, alpha=1.0)}
    for name, raw in runs.items():
        raw["output"] = str(tmp_path / name)
        train_via_cli(raw, folder=tmp_path)
    weights = {name: load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in runs}
    assert all(torch.equal(weights["plain"][k], weights["alpha0"][k]) for k in weights["plain"])
    assert not all(torch.equal(weights["plain"][k], weights["alpha1"][k]) for k in weights["plain"])


def test_compare_rows_share_the_teacher_logits(tiny_config: dict, teacher: Path, tmp_path: Path) -> None:
    raw = student(tiny_config, teacher, temperature=3.0)
    raw["data"]["test_split"] = 0.25  # another training split than the other tests': its logits are computed here
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["compare", str(path), "--out", str(tmp_path / "cmp"), "--strategies", "lora,full"])
    assert result.exit_code == 0, result.output
    reports = [manifest(tmp_path / "cmp" / "runs" / row)["distill"] for row in ("lora", "full")]
    train_rows = 66  # 120 rows, 20% validation and 25% test held out
    assert [r["teacher_logits"]["reused"] for r in reports] == [0, train_rows]  # lora runs first and computes them
    assert all(r["temperature"] == 3.0 for r in reports)


def test_teacher_refusals_name_what_differs(tiny_config: dict, teacher: Path, tmp_path: Path) -> None:
    def refused(raw: dict) -> str:
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "never")])
        assert result.exit_code == 2, result.output
        assert not (tmp_path / "never").exists()
        return " ".join(result.output.split())

    assert "strategy.distill.teacher: " in refused(student(tiny_config, tmp_path / "nowhere"))
    assert "does not exist" in refused(student(tiny_config, tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()
    assert "not a finished tunelab run (no config.yaml, labels.json, model)" in refused(student(tiny_config, tmp_path / "half"))
    rows = [{**row, "label": {"pos": "good", "neg": "bad"}[row["label"]]} for row in sentiment_rows(60)]
    other = student(tiny_config, teacher)
    other["data"]["train"] = str(write_csv(tmp_path / "other.csv", rows))
    message = refused(other)
    assert "was trained on labels ['neg', 'pos'], this data has ['bad', 'good']" in message
    assert "only the teacher's: ['neg', 'pos']; only this data's: ['bad', 'good']" in message
    regression = student(tiny_config, teacher)
    regression["task"] = "regression"
    assert "strategy.distill: distillation learns from a teacher's class scores" in refused(regression)


def test_num_blocks_out_of_range_is_refused_before_training(tiny_config: dict, tmp_path: Path) -> None:
    raw = copy.deepcopy(tiny_config)
    raw["model"] = {"name": tiny_config["model"], "num_blocks": 3}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert "model.num_blocks: 3 is out of range" in " ".join(result.output.split())
    assert "choose 1 to 2" in " ".join(result.output.split())


def _multilabel_file(folder: Path) -> Path:
    from tests.unit.tasks.test_task_runs import multilabel_rows

    path = folder / "multi.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in multilabel_rows(60)), encoding="utf-8")
    return path


@pytest.mark.parametrize("task", ["multilabel", "image_classification"])
def test_multilabel_and_image_students(task: str, tiny_bert: Path, tmp_path: Path, request) -> None:
    """The per-class sigmoid (multilabel) and the softmax over images: a teacher run, then its distilled student."""
    if task == "multilabel":
        base = {"model": str(tiny_bert), "task": task, "head": {"type": "native"}, "early_stopping": {"metric": "micro_f1"},
                "data": {"train": str(_multilabel_file(tmp_path)), "label_column": "labels", "max_length": 16}}
    else:
        base = {"model": str(request.getfixturevalue("tiny_vision_dir")), "task": task, "head": {"type": "linear"},
                "data": {"builtin": "digits", "limit": 60}, "early_stopping": {"metric": "accuracy"}}
    base.update(optim={"lr": 3e-3}, train={"epochs": 1, "batch_size": 16, "precision": "fp32"})
    train_via_cli({**base, "output": str(tmp_path / "teacher")}, folder=tmp_path)
    train_via_cli({**base, "strategy": {"name": "full", "distill": {"teacher": str(tmp_path / "teacher"), "alpha": 0.9}},
                   "output": str(tmp_path / "student")}, folder=tmp_path)
    report = manifest(tmp_path / "student")["distill"]
    train_rows = json.loads((tmp_path / "student" / "profile.json").read_text())["splits"]["train"]["examples"]
    assert report["teacher_logits"]["computed"] == train_rows > 0
    assert report["distill_calls"] > 0 and report["last_distill_loss"] >= 0


def test_tune_trials_share_the_teacher_logits(tiny_config: dict, teacher: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    raw = student(tiny_config, teacher)
    raw["strategy"]["name"] = "head"
    raw["data"]["test_split"] = 0.3  # a training split of its own: the first trial computes its logits
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["tune", str(path), "--out", str(tmp_path / "search"), "--trials", "2",
                                 "--sampler", "random", "--pruner", "none"])
    assert result.exit_code == 0, result.output
    computed = [manifest(tmp_path / "search" / "trials" / str(n))["distill"]["teacher_logits"]["computed"] for n in (0, 1)]
    assert computed[0] > 0 and computed[1] == 0
