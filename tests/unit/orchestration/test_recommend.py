"""recommend on tiny models: every depth scored for every candidate, a plan that validates and trains, and
a train of a plan with a frozen prefix that reads the features recommend built instead of computing them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.conftest import make_tiny_bert, train_via_cli
from tunelab.cli import app
from tunelab.strategies.advice import Advice


def _write(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_recommend_scores_each_depth_of_each_candidate_and_writes_a_valid_plan(tiny_config, tiny_bert, tmp_path) -> None:
    deeper = make_tiny_bert(tmp_path / "three-blocks", layers=3)
    config = _write({**tiny_config, "strategy": {"name": "partial", "freeze_blocks": 1}}, tmp_path / "c.yaml")
    result = CliRunner().invoke(app, ["recommend", str(config), "--models", f"{tiny_bert},{deeper}", "--max-examples",
                                      "40", "--out", str(tmp_path / "rec"), "--write-config", str(tmp_path / "plan.yaml")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rec" / "recommend.json").read_text())
    assert record["sample"]["examples"] == 40 and record["sample"]["of_train"] == 72
    blocks = {b["model"]: len(b["depths"]) for b in record["backbones"]}
    assert blocks == {str(tiny_bert): 3, str(deeper): 4}  # depths 0 (embeddings) .. N
    scores = [b["score"] for b in record["backbones"]]
    assert scores == sorted(scores, reverse=True) and record["ranking"][0] == record["plan"]["model"]
    for depth in record["backbones"][0]["depths"]:
        assert set(depth) == {"depth", "logme", "h_score", "probe_macro_f1", "probe_std"}
        assert 0.0 <= depth["probe_macro_f1"] <= 1.0
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert plan["strategy"]["name"] == record["plan"]["strategy"] and plan["model"]["name"] == record["plan"]["model"]
    assert (tmp_path / "rec" / "recommended.yaml").read_text() == (tmp_path / "plan.yaml").read_text()
    low, high = record["plan"]["expected_test_macro_f1"]
    assert 0.0 <= low <= high <= 1.0 and set(record["plan"]["reasons"]) >= {"strategy", "optim.lr", "head"}
    assert "plan:" in result.output and "expected test macro-F1" in result.output


def test_a_train_of_the_plan_reads_the_features_recommend_built(tiny_config, tiny_bert, tmp_path, monkeypatch) -> None:
    head = Advice("head", {"strategy.name": "head", "optim.lr": 2e-3, "train.epochs": 2}, {"strategy": "test"}, (0.5, 0.9))
    monkeypatch.setattr("tunelab.orchestration.recommend.advise", lambda evidence: head)
    own_cache = {**tiny_config["train"], "cache_dir": str(tmp_path / "cache")}  # not the session's shared root
    config = _write({**tiny_config, "train": own_cache}, tmp_path / "c.yaml")
    result = CliRunner().invoke(app, ["recommend", str(config), "--models", str(tiny_bert), "--out", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    warm = json.loads((tmp_path / "rec" / "recommend.json").read_text())["warm"]
    assert warm["built_entries"] == 3 and warm["depths"] == [2]  # train, validation, test at the last block
    train_via_cli(tmp_path / "rec" / "recommended.yaml")
    manifest = json.loads((Path(tiny_config["output"]) / "manifest.json").read_text())
    assert manifest["activation_cache"]["built_entries"] == 0 and manifest["activation_cache"]["reused_entries"] >= 2


def test_recommend_refuses_a_task_it_cannot_score(tiny_config, tmp_path) -> None:
    config = _write({**tiny_config, "task": "regression"}, tmp_path / "c.yaml")
    result = CliRunner().invoke(app, ["recommend", str(config), "--out", str(tmp_path / "rec")])
    assert result.exit_code != 0 and "recommend scores single-label classes" in result.output


def test_recommend_scores_an_image_backbone_by_its_feature_maps(tiny_vision_dir, tmp_path) -> None:
    config = _write({"model": str(tiny_vision_dir), "task": "image_classification",
                     "data": {"builtin": "digits", "limit": 120},
                     "train": {"epochs": 1, "batch_size": 16}, "output": str(tmp_path / "run")}, tmp_path / "c.yaml")
    result = CliRunner().invoke(app, ["recommend", str(config), "--models", str(tiny_vision_dir), "--out",
                                      str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rec" / "recommend.json").read_text())
    (backbone,) = record["backbones"]
    assert backbone["blocks"] == 16 and len(backbone["depths"]) == 17 and backbone["logme_cls"] is None
    assert backbone["hidden_size"] == 320  # the last block's channels, averaged over the positions of its maps
    assert record["plan"]["strategy"] not in ("prefix_tuning", "lora")
    assert record["warm"]["built_entries"] == 3  # no augmentation: the plan's frozen blocks cached for its train
    assert "spatial mean" in record["plan"]["reasons"]["head"]
