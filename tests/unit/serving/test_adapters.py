"""Several adapters on one base: loaded once, switched by name, each with its own head and labels."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tunelab.artifacts.model_io import load_run
from tunelab.cli.main import app
from tunelab.errors import TunelabError
from tunelab.serving.adapters import load_adapters, parse_adapter_specs, shared_base_count


def test_two_adapters_share_the_base_and_keep_their_outputs(adapter_run) -> None:
    a = adapter_run({"name": "lora"}, name="a", seed=1)
    b = adapter_run({"name": "lora", "lora": {"rank": 2}}, name="b", seed=2, labels=("x", "y"))
    ids = torch.tensor([[2, 5, 9, 3]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        alone = {name: load_run(path).model.eval()(ids, mask) for name, path in (("a", a), ("b", b))}
        runs = load_adapters(parse_adapter_specs([f"a={a}", f"b={b}"]))
        for name, run in runs.items():
            torch.testing.assert_close(run.model.eval()(ids, mask), alone[name])
    one_base = shared_base_count({"a": runs["a"]})
    assert shared_base_count(runs) == one_base
    assert runs["b"].label_names == ["x", "y"]


def test_predict_cli_with_adapters(adapter_run) -> None:
    a = adapter_run({"name": "lora"}, name="a")
    b = adapter_run({"name": "lora"}, name="b", seed=3)
    result = CliRunner().invoke(app, ["predict", "--adapter", f"first={a}", "--adapter", f"second={b}", "--text", "good movie"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["adapter"] for r in rows] == ["first", "second"]


def test_adapter_specs_are_checked() -> None:
    with pytest.raises(TunelabError, match="twice"):
        parse_adapter_specs(["a=x", "a=y"])
    assert parse_adapter_specs(["runs/news"]) == {"news": __import__("pathlib").Path("runs/news")}
