"""The forgetting meter of every run: the section's shape in test_metrics.json, effective weights of PEFT
methods, a run trained identically with and without the meter, guards that cut the drift they guard, the
compare row's summary."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import train_via_cli
from tunelab.catalog import parse_config
from tunelab.config.schema import OptimConfig
from tunelab.orchestration.forgetting import effective_weights, forgetting_summary, weight_drift
from tunelab.strategies import compile_strategy


def run(tiny_config: dict, tmp_path: Path, name: str, **changes) -> Path:
    config = copy.deepcopy(tiny_config)
    for section, value in changes.items():
        config[section] = value if not isinstance(value, dict) else {**config.get(section, {}), **value}
    out = tmp_path / name
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    train_via_cli(config, "--out", str(out), folder=tmp_path)
    return out


def forgetting(run_dir: Path) -> dict:
    return json.loads((run_dir / "test_metrics.json").read_text())["forgetting"]


def test_the_meter_section_and_a_run_trained_as_without_it(tiny_config: dict, tmp_path: Path) -> None:
    measured = run(tiny_config, tmp_path, "measured")
    section = forgetting(measured)
    assert len(section["weight_drift"]) == len(section["cka"]) == 2              # tiny BERT: 2 blocks
    assert all(d > 0 for d in section["weight_drift"]) and all(0 < c <= 1 for c in section["cka"])
    assert set(section["retention"]) == {"knn10_overlap"} and section["retention"]["knn10_overlap"]["before"] == 1.0
    assert section["reference"] == "test split: 24 examples" and section["guard"] is None
    plain = run(tiny_config, tmp_path, "plain", forgetting={"measure": False})
    assert "forgetting" not in json.loads((plain / "test_metrics.json").read_text())
    a, b = load_file(str(measured / "model" / "model.safetensors")), load_file(str(plain / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_l2sp_and_ewc_hold_the_weights_and_report_their_cost(tiny_config: dict, tmp_path: Path) -> None:
    free = forgetting(run(tiny_config, tmp_path, "free"))
    l2sp = forgetting(run(tiny_config, tmp_path, "l2sp", strategy={"name": "full", "guard": {"name": "l2sp", "strength": 1.0}}))
    ewc_dir = run(tiny_config, tmp_path, "ewc", strategy={"name": "full", "guard": {"name": "ewc", "strength": 1e9,
                                                                                      "fisher_examples": 16}})
    ewc = forgetting(ewc_dir)
    assert sum(l2sp["weight_drift"]) < 0.5 * sum(free["weight_drift"])
    # EWC holds the weights the Fisher finds important and lets the rest move (under Adam every weight moves by
    # about the learning rate a step): the drift of all weights barely changes, the representations do
    assert sum(ewc["cka"]) > sum(free["cka"]) and ewc["retention"]["knn10_overlap"]["after"] > free["retention"]["knn10_overlap"]["after"]
    assert l2sp["guard"]["penalty_calls"] > 0 and l2sp["guard"]["state_mb"] > 0 and "penalty_s" in l2sp["guard"]
    assert ewc["guard"]["fisher"].startswith("16 examples of the training split") and ewc["guard"]["fisher_s"] >= 0
    assert (ewc_dir / "guards" / "fisher.safetensors").is_file()
    manifest = json.loads((ewc_dir / "manifest.json").read_text())
    assert manifest["guard"]["name"] == "ewc" and manifest["guard"]["held_parameters"] > 0


def test_partial_with_l2sp_on_cached_blocks(tiny_config: dict, tmp_path: Path) -> None:
    out = run(tiny_config, tmp_path, "partial", strategy={"name": "partial", "freeze_blocks": 1, "guard": {"name": "l2sp"}})
    section = forgetting(out)
    assert section["weight_drift"][0] == 0.0 and section["weight_drift"][1] > 0 and section["cka"][0] == 1.0
    assert json.loads((out / "manifest.json").read_text())["activation_cache"] is not None


def test_lora_drift_is_its_merged_delta_and_leaves_the_model_unmerged(build_tiny, sentiment_csv: Path) -> None:
    model = build_tiny()
    base = copy.deepcopy(model)
    config = parse_config({"data": {"train": str(sentiment_csv)},
                           "strategy": {"name": "lora", "lora": {"rank": 2, "target_modules": ["query"]}}})
    compile_strategy(config.strategy, model, OptimConfig(), 1)
    assert weight_drift(base, model)[0] == [0.0, 0.0]                             # LoRA starts at zero change
    layer = model.get_submodule("network.bert.encoder.layer.1.attention.self.query")
    with torch.no_grad():
        layer.lora_B.weight.fill_(0.2)
    weights = effective_weights(model)
    name = "network.bert.encoder.layer.1.attention.self.query.weight"
    assert torch.allclose(weights[name], layer.base_layer.weight + layer.delta_weight())
    assert not layer.merged and not any("lora_" in n for n in weights)
    drift, embeddings = weight_drift(base, model)
    assert drift[0] == 0.0 and drift[1] > 0 and embeddings == 0.0


def test_compare_row_summary() -> None:
    section = {"weight_drift": [0.1, 0.3], "cka": [1.0, 0.8], "retention": {"knn10_overlap": {"before": 1.0, "after": 0.6},
                                                                             "perplexity": {"before": 20.0, "after": 25.0}}}
    summary = forgetting_summary(section)
    assert summary == {"mean_weight_drift": pytest.approx(0.2), "mean_cka": pytest.approx(0.9),
                       "retention": {"knn10_overlap": 0.6, "perplexity": 1.25}}
    assert forgetting_summary(None) is None


def test_rows_of_one_prepared_run_share_the_base_side(tiny_config: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two strategies and two seeds on one prepared run: the base model's reference features are computed once
    (the backbone is the same for every row), the tuned model's once per row; each row's section equals the one
    a lone run of it writes (the second row's base side came from the first)."""
    from tunelab.artifacts.rundir import RunDirectory
    from tunelab.orchestration import forgetting as meter_module
    from tunelab.orchestration.prepare import prepare
    from tunelab.orchestration.run_one import run_one

    calls = []
    counting = lambda model, *a, **k: calls.append(model) or block_features(model, *a, **k)  # noqa: E731
    block_features = meter_module.block_features
    monkeypatch.setattr(meter_module, "block_features", counting)
    tiny_config["train"]["precision"] = "fp32"
    tiny_config["data"]["split_seed"] = 0  # the seeds vary the training, not the split (as compare pins it)
    base = parse_config(tiny_config)
    prepared = prepare(base)
    rows = [("full", 0), ("lora", 0), ("lora", 1)]
    for name, seed in rows:
        row = base.model_copy(update={"strategy": base.strategy.model_copy(update={"name": name}),
                                      "train": base.train.model_copy(update={"seed": seed})})
        run_one(prepared, row, run_dir=RunDirectory(tmp_path / f"{name}{seed}"))
    assert len(calls) == len(rows) + 1
    solo = run(tiny_config, tmp_path, "solo", strategy={"name": "lora"}, train={**tiny_config["train"], "seed": 1})
    ours, theirs = forgetting(tmp_path / "lora1"), forgetting(solo)
    ours.pop("seconds"), theirs.pop("seconds")
    assert ours == theirs
