"""`tunelab merge` on tiny runs end to end: a run merged with itself is that run; the output directory is a run
that `tunelab predict` loads and whose predictions are the merged weights' (computed here from the runs'
weights); what a merge refuses, by name; a failed merge leaves nothing; the greedy soup adds a run only when
the soup's validation score does not drop and skips the rows that cannot join it, with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import sentiment_rows, train_via_cli, write_csv
from tunelab.cli import app

runner = CliRunner()
TEXTS = ["the film was great and nice", "a really awful and sad story", "the plot is poor", "good acting"]


@pytest.fixture(scope="module")
def runs(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A comparison (full, lora, houlsby; seed 0), a full run of seed 1 on the same split, a `head` run with a
    linear head, and two runs that cannot be scored with them: one of other labels, one holding out other
    examples. (A comparison prepares one head for all its rows.)"""
    folder = tmp_path_factory.mktemp("merge")
    data = write_csv(folder / "train.csv", sentiment_rows(120))
    config = {"model": str(tiny_bert), "data": {"train": str(data), "max_length": 16, "split_seed": 0},
              "optim": {"lr": 5e-3}, "train": {"epochs": 3, "batch_size": 8, "seed": 0, "precision": "fp32"},
              "forgetting": {"measure": False}, "output": str(folder / "unused")}
    (folder / "c.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = runner.invoke(app, ["compare", str(folder / "c.yaml"), "--out", str(folder / "cmp"), "--strategies",
                                 "full,lora,houlsby", "--set", "full.optim.lr=5e-3"])
    assert result.exit_code == 0, result.output
    other = [{"text": r["text"], "label": {"pos": "good", "neg": "bad"}[r["label"]]} for r in sentiment_rows(120)]
    train_via_cli({**config, "data": {**config["data"], "train": str(write_csv(folder / "o.csv", other))},
                   "output": str(folder / "other")}, folder=folder)
    train_via_cli({**config, "data": {**config["data"], "split_seed": 1}, "output": str(folder / "split")},
                  folder=folder)
    train_via_cli({**config, "train": {**config["train"], "seed": 1}, "output": str(folder / "b")}, folder=folder)
    train_via_cli({**config, "strategy": {"name": "head"}, "head": {"type": "linear"}, "optim": {"lr": 2e-2},
                   "output": str(folder / "linear")}, folder=folder)
    rows = folder / "cmp" / "runs"
    return {"cmp": folder / "cmp", "a": rows / "full", "b": folder / "b", "lora": rows / "lora",
            "houlsby": rows / "houlsby", "linear": folder / "linear", "other": folder / "other",
            "split": folder / "split", "folder": folder}


def _merge(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["merge", *args])
    return result.exit_code, " ".join(result.output.split())


def _predict(run: Path) -> list[dict]:
    result = runner.invoke(app, ["predict", str(run), *[x for t in TEXTS for x in ("--text", t)]])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.strip().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from tunelab.orchestration.merge_inputs import fold

    return {k: v.detach().clone() for k, v in fold(run).model.state_dict().items()}


def test_a_run_merged_with_itself_is_that_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "self"
    code, output = _merge(str(runs["a"]), str(runs["a"]), "--method", "linear", "--out", str(out))
    assert code == 0, output
    ours, theirs = load_file(out / "model" / "model.safetensors"), load_file(runs["a"] / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.allclose(ours[k], theirs[k], atol=1e-7) for k in ours)
    merged, alone = (json.loads((d / "test_metrics.json").read_text()) for d in (out, runs["a"]))
    assert merged["accuracy"] == alone["accuracy"] and merged["macro_f1"] == alone["macro_f1"]
    for ours, theirs in zip(_predict(out), _predict(runs["a"])):
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=2e-6)


def test_the_merged_run_predicts_with_the_merged_weights(runs: dict[str, Path], tmp_path: Path) -> None:
    from tunelab.artifacts.model_io import load_run
    from tunelab.data.records import Record
    from tunelab.models.merging import WeightSpace, ties_merge
    from tunelab.serving.predictor import predictor_of

    out = tmp_path / "ties"
    code, output = _merge(str(runs["a"]), str(runs["b"]), str(runs["lora"]), "--method", "ties", "--out", str(out))
    assert code == 0, output
    record = json.loads((out / "merge.json").read_text())
    assert [r["run"] for r in record["runs"]] == [str(runs[k]) for k in ("a", "b", "lora")]
    assert len(record["grid"]) == 18 and record["chosen"] in record["grid"]
    assert record["chosen"]["validation"] == max(p["validation"] for p in record["grid"])
    assert set(record["seconds"]) == {"load_s", "search_s", "test_s", "total_s"}
    assert json.loads((out / "test_metrics.json").read_text())["accuracy"] == record["test"]["accuracy"]
    assert all(set(r["test"]) >= {"accuracy", "macro_f1"} for r in record["runs"])
    # the expected weights, from the three runs' own and the base's, by the chosen point
    template = load_run(runs["a"])
    from tunelab.tasks.registry import get_task

    base_state = get_task("classification").build_model(template.config.model, template.config.head,
                                                         template.label_names).state_dict()
    space = WeightSpace.of(base_state, [_weights(runs[k]) for k in ("a", "b", "lora")], template.model)
    template.model.load_state_dict(ties_merge(space, record["chosen"]["density"], record["chosen"]["lambda"]))
    expected = predictor_of(template).predict([Record(text=t, label=None, where="") for t in TEXTS]).scores
    got = [[row["probabilities"][name] for name in template.label_names] for row in _predict(out)]
    assert torch.allclose(torch.tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64),
                          atol=2e-6)
    # an ordinary run directory: eval and export read it, transformers loads its model as is, its files are there
    evaluated = runner.invoke(app, ["eval", str(out), "--data", str(runs["folder"] / "train.csv")])
    assert evaluated.exit_code == 0 and "accuracy" in evaluated.output, evaluated.output
    exported = runner.invoke(app, ["export", str(out), "--format", "onnx", "--out", str(tmp_path / "onnx")])
    assert exported.exit_code == 0 and (tmp_path / "onnx" / "model.onnx").is_file(), exported.output
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out / "model").config.num_labels == 2
    for name in ("config.yaml", "labels.json", "manifest.json", "predictions.csv", "report.html", "model/README.md"):
        assert (out / name).is_file(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["strategy"]["name"] == "full"


@pytest.mark.parametrize("pick, line", [
    (("a", "other"), "its labels are"),
    (("a", "split"), "its validation split holds other examples"),
    (("a", "houlsby"), "adds layers"),
    (("a", "linear"), "its head is"),
    (("a",), "give two or more runs"),
])
def test_what_a_merge_refuses(runs: dict[str, Path], tmp_path: Path, pick: tuple[str, ...], line: str) -> None:
    code, output = _merge(*[str(runs[k]) for k in pick], "--method", "task_arithmetic", "--out", str(tmp_path / "m"))
    assert code == 2 and line in output, output
    if len(pick) > 1:
        assert str(runs[pick[1]]) in output
    assert not (tmp_path / "m").exists()


def test_what_the_command_line_refuses(runs: dict[str, Path], tmp_path: Path) -> None:
    code, output = _merge(str(runs["a"]), str(runs["b"]), "--method", "mean", "--out", str(tmp_path / "m"))
    assert code == 2 and "choose one of linear, task_arithmetic, ties, greedy_soup" in output
    code, output = _merge(str(runs["a"]), str(tmp_path), "--method", "linear", "--out", str(tmp_path / "m"))
    assert code == 2 and "not a finished run directory" in output
    code, output = _merge(str(runs["a"]), str(runs["b"]), "--method", "linear", "--out", str(runs["a"]), "--overwrite")
    assert code == 2 and "one of the runs to merge" in output and (runs["a"] / "manifest.json").is_file()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, output = _merge(str(runs["a"]), str(runs["b"]), "--method", "linear", "--out", str(tmp_path / "full"))
    assert code == 2 and "already holds files" in output


def test_a_failed_merge_leaves_no_output(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.orchestration import merge_output
    from tunelab.orchestration.merge import MergeRequest, merge

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(merge_output, "score_test", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        merge(MergeRequest([runs["a"], runs["b"]], "linear", tmp_path / "m"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_greedy_soup_adds_a_run_only_when_validation_does_not_drop(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "soup"
    code, output = _merge(str(runs["cmp"]), str(runs["b"]), str(runs["linear"]), "--method", "greedy_soup", "--out",
                          str(out))
    assert code == 0, output
    record = json.loads((out / "merge.json").read_text())
    skipped = {Path(s["run"]).name: s["reason"] for s in record["skipped"]}
    assert "adds layers" in skipped["houlsby"]
    ranked = [Path(r["run"]).name for r in record["runs"]]
    kinds = {name: name == "linear" for name in ranked}
    assert all(kinds[name] == kinds[ranked[0]] for name in ranked)       # one head type: the best run's
    assert all("its head is" in skipped[n] for n in skipped if n != "houlsby"), skipped
    assert len(ranked) + len(skipped) == 5
    # ranked by validation; each step adds its run exactly when the soup's score does not drop
    scores = [r["validation"][record["metric"]] for r in record["runs"]]
    assert scores == sorted(scores, reverse=True)
    current = record["steps"][0]["soup_validation"]
    for step in record["steps"][1:]:
        assert step["added"] == (step["soup_validation"] >= current)
        current = step["soup_validation"] if step["added"] else current
    members = record["chosen"]["runs"]
    assert members == [s["run"] for s in record["steps"] if s["added"]]
    # the soup's weights are the uniform mean of its members'
    states = [_weights(Path(run)) for run in members]
    saved = _weights(out)
    for key in saved:
        assert torch.allclose(saved[key], sum(s[key] for s in states) / len(states), atol=1e-6), key
