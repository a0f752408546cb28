"""recommend on the real backbones and real BBC News articles: the pre-trained encoders rank above MiniLM's
random twin on every score, and the plan it writes trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunelab.cli import app

pytestmark = pytest.mark.e2e


def test_pretrained_encoders_outrank_the_random_control_and_the_plan_trains(tmp_path: Path) -> None:
    config = tmp_path / "bbc.yaml"
    config.write_text(yaml.safe_dump({
        "model": "minilm", "task": "classification",
        "data": {"builtin": "bbc-news", "limit": 300, "max_length": 64, "validation_split": 0.1, "test_split": 0.2},
        "train": {"epochs": 1, "batch_size": 16, "seed": 0}, "output": str(tmp_path / "run")}), encoding="utf-8")
    result = CliRunner().invoke(app, ["recommend", str(config), "--models", "minilm,paraphrase-minilm-l3,minilm-random",
                                      "--max-examples", "150", "--out", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rec" / "recommend.json").read_text())
    assert record["ranking"][-1] == "minilm-random" and record["plan"]["model"] != "minilm-random"
    by_model = {b["model"]: b for b in record["backbones"]}
    control = by_model.pop("minilm-random")
    for backbone in by_model.values():  # every score of every depth's best ranks the control last
        for score in ("logme", "h_score", "probe_macro_f1"):
            assert max(d[score] for d in backbone["depths"]) > max(d[score] for d in control["depths"]), score
    result = CliRunner().invoke(app, ["train", str(tmp_path / "rec" / "recommended.yaml")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["macro_f1"] > 0.5
