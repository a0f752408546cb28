"""Preference runs on a tiny random Llama, through the one trainer: preference accuracy rising on a learnable toy
set, the loss starting at log 2, the reference's log-probs computed once and read back (a later run, `eval`, a
resumed run), LoRA's reference being the base with the adapter off, and a kill + resume ending bit-identical."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.unit.tasks.test_instruction import make_tiny_llama, tokenizer_of, write_jsonl
from tests.unit.training.test_resume import assert_bit_identical
from tunelab.catalog import parse_config
from tunelab.cli import app
from tunelab.data.chat import read_pairs
from tunelab.errors import TunelabError
from tunelab.export.formats import export_run
from tunelab.inference.predict import predict_split
from tunelab.orchestration.train import train
from tunelab.paths import reference_logprobs_dir
from tunelab.serving.backend import check_servable
from tunelab.serving.predict import evaluate_file, predict_rows
from tunelab.serving.reference_logprobs import base_settings, reference_logprobs
from tunelab.strategies.registry import compile_strategy
from tunelab.tasks.preference import PreferenceTask

TASK = PreferenceTask()
CPU = torch.device("cpu")
KILLER = Path(__file__).resolve().parents[1] / "training" / "kill_run.py"
SRC = Path(__file__).resolve().parents[3] / "src"
# what the toy model learns: the right colour, and a greeting over a story
QUESTIONS = [("what colour is the sky", "blue", "green"), ("what colour is the grass", "green", "blue"),
             ("say hello", "hello there", "a long story")]
LORA = {"name": "lora", "lora": {"target_modules": ["q_proj", "v_proj"], "rank": 4, "lr": 1e-2}}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def pairs(n: int) -> list[dict]:
    return [dict(zip(("prompt", "chosen", "rejected"), QUESTIONS[i % 3])) for i in range(n)]


def raw_config(model: Path, folder: Path, **over) -> dict:
    raw = {"model": str(model), "task": "preference",
           "data": {"train": str(write_jsonl(folder / "train.jsonl", pairs(30))),
                    "test": str(write_jsonl(folder / "test.jsonl", pairs(9))), "validation_split": 0.2,
                    "test_split": 0.0, "max_length": 32},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3}, "schedule": {"name": "constant"},
           "train": {"epochs": 4, "batch_size": 4, "seed": 0, "precision": "fp32", "num_threads": 1},
           "output": str(folder / "run")}
    raw.update(over)
    return raw


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_a_run_learns_the_preference_from_log_2_and_reuses_its_reference(tiny_llama: Path, tmp_path: Path) -> None:
    summary = train(parse_config(raw_config(tiny_llama, tmp_path)))
    metrics = summary.test_metrics
    assert metrics["preference_accuracy"] == 1.0 and metrics["reward_margin"] > 0
    assert metrics["logprob_accuracy"] == 1.0 > metrics["base_logprob_accuracy"]  # the base preferred some rejected
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[0]["kind"] == "train" and steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # pi == ref
    history = manifest(tmp_path / "run")["history"]
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["reward_margin"] > history[0]["reward_margin"]
    reference = manifest(tmp_path / "run")["preference"]["reference"]
    assert {name: (r["pairs"], r["computed"]) for name, r in reference.items()} == \
        {"train": (24, 24), "validation": (6, 6), "test": (9, 9)}
    entries = sorted(reference_logprobs_dir().iterdir())

    again = raw_config(tiny_llama, tmp_path, strategy=LORA, output=str(tmp_path / "lora"), preference={"beta": 0.5})
    result = CliRunner().invoke(app, ["train", str(write_yaml(tmp_path / "lora.yaml", again))])
    assert result.exit_code == 0, result.output
    assert "reference log-probs (the model before training, adapter off): 39 read from the cache" in \
        " ".join(result.output.split())
    lora = manifest(tmp_path / "lora")["preference"]
    assert lora["beta"] == 0.5 and all(r["computed"] == 0 for r in lora["reference"].values())
    assert {n: r["key"] for n, r in lora["reference"].items()} == {n: r["key"] for n, r in reference.items()}

    card = (tmp_path / "lora" / "model" / "README.md").read_text(encoding="utf-8")
    writing, scoring = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert "text-generation" in card and "PeftModel.from_pretrained" in writing and 'input_path="pairs.jsonl"' in scoring
    exec(compile(writing.replace("RUN_DIR", str(tmp_path / "lora")), "model-card", "exec"), {})  # the card's code runs

    scored = evaluate_file(tmp_path / "run", tmp_path / "test.jsonl")  # eval: the base model's reference, cached
    for name in ("preference_accuracy", "reward_margin", "reward_chosen", "base_logprob_accuracy"):
        assert scored[name] == pytest.approx(metrics[name], abs=1e-5)
    assert sorted(reference_logprobs_dir().iterdir()) == entries  # nothing new was computed

    rows = predict_rows(tmp_path / "run", input_path=tmp_path / "test.jsonl")  # predict: log pi(chosen) - log pi(rej.)
    assert len(rows) == 9 and all(row["prediction"] > 0 for row in rows)  # logprob_accuracy 1.0 above
    with pytest.raises(TunelabError, match="scores pairs of replies"):
        check_servable(tmp_path / "run", "serve")
    with pytest.raises(TunelabError, match="export --merge folds"):
        export_run(tmp_path / "lora", tmp_path / "onnx", format="onnx")


def write_yaml(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_lora_reference_is_the_base_with_the_adapter_off(tiny_llama: Path, tmp_path: Path) -> None:
    config = parse_config(raw_config(tiny_llama, tmp_path, strategy=LORA))
    split = TASK.encode(read_pairs(write_jsonl(tmp_path / "p.jsonl", pairs(6))), tokenizer_of(tiny_llama), 32, [])
    model = TASK.build_model(config.model, config.head, [], tiny_llama)
    compile_strategy(config.strategy, model, config.optim, 1)
    with torch.no_grad():  # a trained-looking adapter: the adapted model no longer equals the base
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)

    def outputs(m: torch.nn.Module) -> torch.Tensor:
        return predict_split(m, split, TASK, [], batch_size=4, pad_id=2, device=CPU)[0].raw

    adapted = outputs(model)
    got = reference_logprobs(lambda: model, split, TASK, base=base_settings("lora-test", config.model),
                             precision="fp32", device=CPU, batch_size=4, pad_id=2)
    base = TASK.build_model(config.model, config.head, [], tiny_llama)
    assert got.computed == 6 and torch.allclose(got.logprobs, outputs(base), atol=1e-5)
    assert not torch.allclose(adapted, got.logprobs, atol=1e-3)
    assert torch.equal(outputs(model), adapted)  # the adapter is back in place afterwards


def test_a_killed_run_resumes_bit_identical_reading_its_reference_back(tiny_llama: Path, tmp_path: Path) -> None:
    raw = raw_config(tiny_llama, tmp_path, strategy=LORA)
    raw["train"].update(epochs=2, checkpoint_every_steps=2)
    config = write_yaml(tmp_path / "c.yaml", raw)
    assert CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "reference")]).exit_code == 0
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, str(KILLER), "step:9", "train", str(config), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    result = CliRunner().invoke(app, ["train", str(config), "--resume", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output
    assert_bit_identical(tmp_path / "reference", tmp_path / "run")
    assert all(r["computed"] == 0 for r in manifest(tmp_path / "run")["preference"]["reference"].values())
