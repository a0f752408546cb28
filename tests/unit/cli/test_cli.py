"""The CLI on the tiny model: a full train -> predict -> eval cycle, and user errors as exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tunelab.cli import app

runner = CliRunner()


def write_config(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_train_predict_eval_cycle(tiny_config: dict, tmp_path: Path, sentiment_csv: Path) -> None:
    config = write_config(tmp_path, tiny_config)
    result = runner.invoke(app, ["train", str(config), "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    run = Path(tiny_config["output"])
    for name in ("config.yaml", "manifest.json", "labels.json", "metrics.jsonl", "test_metrics.json", "predictions.csv",
                 "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 0 and len(manifest["base_model_sha256"]) == 64 and manifest["packages"]["torch"]
    assert manifest["unknown_token_rate"] == {"train": 0.0, "validation": 0.0, "test": 0.0}  # every word in the vocabulary
    assert "[UNK]" not in result.output

    result = runner.invoke(app, ["predict", str(run), "--text", "good great movie", "--text", "awful bad film"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [set(r["probabilities"]) for r in rows] == [{"neg", "pos"}] * 2

    out = tmp_path / "preds.csv"
    assert runner.invoke(app, ["predict", str(run), "--input", str(sentiment_csv), "--output", str(out)]).exit_code == 0
    assert out.read_text().splitlines()[0] == "where,text,prediction,prob_neg,prob_pos"

    result = runner.invoke(app, ["eval", str(run), "--data", str(sentiment_csv)])
    assert result.exit_code == 0 and "accuracy" in result.stdout


def test_config_error_is_exit_2_without_traceback(tmp_path: Path, tiny_config: dict) -> None:
    tiny_config["optim"] = {"learning_rate": 1e-4}
    result = runner.invoke(app, ["train", str(write_config(tmp_path, tiny_config))])
    assert result.exit_code == 2
    assert "optim.learning_rate" in result.output and "Traceback" not in result.output


def test_bad_data_leaves_existing_output_untouched(tmp_path: Path, tiny_config: dict) -> None:
    run = Path(tiny_config["output"])
    run.mkdir()
    (run / "keep.txt").write_text("earlier")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood movie,pos\n,neg\n", encoding="utf-8")
    tiny_config["data"]["train"] = str(bad)
    result = runner.invoke(app, ["train", str(write_config(tmp_path, tiny_config)), "--overwrite"])
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "row 2" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"] and (run / "keep.txt").read_text() == "earlier"
    assert not any(p.name.startswith(".run") for p in tmp_path.iterdir())


def test_validate_and_debug_flag(tmp_path: Path, tiny_config: dict) -> None:
    config = write_config(tmp_path, tiny_config)
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0 and "valid" in result.stdout
    tiny_config["train"]["epochs"] = 0
    result = runner.invoke(app, ["--debug", "validate", str(write_config(tmp_path, tiny_config))])
    assert result.exit_code != 0 and result.exception is not None  # --debug re-raises for the traceback


def test_predict_needs_exactly_one_input(tiny_config: dict) -> None:
    result = runner.invoke(app, ["predict", "somewhere"])
    assert result.exit_code == 2 and "--input FILE or one or more --text" in result.output
