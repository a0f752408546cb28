"""`tunelab train` checks the output folder, the data and the model directory before it reports, and lists
every problem found in one message (exit 2), writing nothing: a user fixes them all before the next try."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.errors import ConfigError, DataError, ModelError, Problems, check_all

BAD = Path(__file__).resolve().parents[2] / "badinput" / "data"
runner = CliRunner()
EXISTS = "already holds files (an earlier run?)"


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def run_train(tmp_path: Path, model: Path, train: Path) -> tuple[str, int]:
    """Train into an output folder that holds an earlier run (no --overwrite); the folder must not change and
    no staging folder may appear."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": str(model), "data": {"train": str(train), "max_length": 16},
                                      "train": {"epochs": 1, "batch_size": 8}, "output": str(out)}))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["train", str(config)])
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    assert files(out) == {"keep.txt": b"an earlier run"}, "the existing output directory changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a file or staging folder was created"
    return " ".join(result.output.split()), result.exit_code


def test_output_and_missing_column_together(tmp_path: Path, tiny_bert: Path) -> None:
    output, code = run_train(tmp_path, tiny_bert, BAD / "no_label_column.csv")
    assert code == 2
    assert output.startswith("error: 2 problems:"), output
    assert EXISTS in output and "no_label_column.csv:header: no label column 'label'" in output


def test_output_missing_model_and_empty_data_together(tmp_path: Path) -> None:
    output, code = run_train(tmp_path, tmp_path / "no-model", BAD / "empty.csv")
    assert code == 2
    assert output.startswith("error: 3 problems:"), output
    for fragment in (EXISTS, "empty.csv: file is empty", "no-model' is neither a built-in model"):
        assert fragment in output, fragment
    assert output.index(EXISTS) < output.index("empty.csv") < output.index("no-model"), "output, data, model order"


def test_one_problem_keeps_its_own_message(tmp_path: Path, tiny_bert: Path, sentiment_csv: Path) -> None:
    output, code = run_train(tmp_path, tiny_bert, sentiment_csv)
    assert code == 2 and "problems" not in output
    assert output.startswith(f"error: output: {(tmp_path / 'run').resolve()} {EXISTS}"), output


def test_check_all_runs_every_check_and_keeps_order() -> None:
    ran: list[str] = []

    def fail(kind: type[Exception], name: str):
        def check() -> None:
            ran.append(name)
            raise kind(f"{name}: bad\nsecond line")
        return check

    with pytest.raises(Problems) as caught:
        check_all([fail(ConfigError, "output"), fail(DataError, "data"), fail(ModelError, "model")])
    assert ran == ["output", "data", "model"]
    assert str(caught.value) == ("3 problems:\n  - output: bad\n    second line\n  - data: bad\n    second line\n"
                                 "  - model: bad\n    second line")
    assert [type(e) for e in caught.value.errors] == [ConfigError, DataError, ModelError]
    assert check_all([lambda: 1, lambda: 2]) == [1, 2]


def test_check_all_one_failure_is_the_error_itself() -> None:
    error = DataError("x.csv: file is empty")

    def fail() -> None:
        raise error

    with pytest.raises(DataError) as caught:
        check_all([lambda: 1, fail])
    assert caught.value is error


def test_check_all_lets_bugs_through() -> None:
    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        check_all([bug, lambda: (_ for _ in ()).throw(ModelError("model"))])
