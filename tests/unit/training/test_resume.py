"""Kill a run with SIGKILL (mid-epoch, and in the middle of a checkpoint write), resume it, and check the final
weights are bit-identical to the same run left uninterrupted; a corrupted checkpoint is skipped with a warning."""

from __future__ import annotations

import copy

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tunelab.cli import app

KILLER = Path(__file__).with_name("kill_run.py")
SRC = Path(__file__).resolve().parents[3] / "src"
STEPS_PER_EPOCH, EPOCHS, EVERY = 9, 3, 4   # 72 train rows / batch 8; checkpoints at steps 4, 8, 9-end, 12, ...
runner = CliRunner()


@pytest.fixture(scope="module")
def full_reference(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The `full` config and its uninterrupted run, shared by the tests that resume it."""
    tmp = tmp_path_factory.mktemp("full-reference")
    raw = {"model": str(tiny_bert), "data": {"train": str(sentiment_csv), "max_length": 16, "validation_split": 0.2,
                                              "test_split": 0.2},
           "optim": {"lr": 3e-3}, "train": {"batch_size": 8, "seed": 0}, "output": str(tmp / "unused")}
    config = write_config(tmp, raw, "full")
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp / "reference")]).exit_code == 0
    return config, tmp / "reference"


# killed again inside a checkpoint file write: the checkpoint writer is one for every strategy, so two legs (a
# full state and a PEFT adapter's) check it; the other legs check that their own state comes back after a kill
WRITE_KILLED = ("full", "lora")
GUARDED = {"full+ewc": {"name": "full", "guard": {"name": "ewc", "strength": 1e8, "fisher_examples": 8}},
           "full+replay": {"name": "full", "guard": {"name": "replay", "ratio": 0.5}}}


def write_config(tmp_path: Path, tiny_config: dict, strategy: str) -> Path:
    tiny_config["strategy"] = copy.deepcopy(GUARDED.get(strategy, {"name": strategy.split("+")[0]}))
    if strategy == "full+balanced+augment":  # batches drawn by class, augmented, the focal loss: draws repeat after a kill
        tiny_config["data"]["sampler"] = "balanced"
        tiny_config["data"]["augment"] = {"token_dropout": 0.1, "swap": 0.1, "span_mask": 0.15}
        tiny_config["loss"] = {"name": "focal", "focal_gamma": 2.0}
    if strategy == "full+mlm":  # continued pre-training: each batch's masks are drawn per (seed, epoch, batch)
        tiny_config["task"] = "mlm"
    if strategy == "full+replay":  # replays the training file itself: its draws must repeat after a kill
        tiny_config["strategy"]["guard"]["data"] = tiny_config["data"]["train"]
    if strategy == "full+distill":  # a one-block student of a teacher run: its cached logits are read on resume
        tiny_config["strategy"]["distill"] = {"teacher": str(_teacher(tmp_path, tiny_config)), "alpha": 0.7}
        tiny_config["model"] = {"name": tiny_config["model"], "num_blocks": 1}
    # precision fixed: runs killed in a subprocess (no conftest there) resume in this process
    tiny_config["train"].update(epochs=EPOCHS, num_threads=1, checkpoint_every_steps=EVERY, keep_checkpoints=2,
                                precision="fp32")
    path = tmp_path / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(tiny_config), encoding="utf-8")
    return path


def _teacher(tmp_path: Path, tiny_config: dict) -> Path:
    """A one-epoch `full` run of the same data: the teacher of `full+distill`."""
    raw = {**copy.deepcopy(tiny_config), "strategy": {"name": "full"}, "output": str(tmp_path / "teacher")}
    raw["train"] = {**raw["train"], "epochs": 1, "precision": "fp32"}
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert runner.invoke(app, ["train", str(tmp_path / "teacher.yaml")]).exit_code == 0
    return tmp_path / "teacher"


def killed(spec: str, config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(KILLER), spec, "train", str(config), "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def train_rows(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["epoch"], r["step"], r.get("loss"), r.get("lr")) for r in rows]


def assert_bit_identical(a: Path, b: Path) -> None:
    """Every weights file of the saved model (full weights, or adapter + head for PEFT) is equal tensor by tensor."""
    files = sorted(p.name for p in (a / "model").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (b / "model").glob("*.safetensors"))
    for file in files:
        wa, wb = load_file(str(a / "model" / file)), load_file(str(b / "model" / file))
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{file}: {name}"
    assert train_rows(a) == train_rows(b)


@pytest.mark.parametrize("strategy", ["full", "gradual", "lora", "full+ewc", "full+replay", "full+balanced+augment",
                                      "full+mlm", "full+distill"])
def test_sigkill_and_resume_is_bit_identical(strategy: str, tiny_config: dict, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config, strategy)
    reference = tmp_path / "reference"
    assert runner.invoke(app, ["train", str(config), "--out", str(reference)]).exit_code == 0

    rng = random.Random(strategy)
    step = rng.choice([s for s in range(EVERY + 1, EPOCHS * STEPS_PER_EPOCH) if s % STEPS_PER_EPOCH])  # mid-epoch
    write = rng.randint(1, 8)  # one of the 4 files of the resumed run's 1st or 2nd checkpoint
    run = tmp_path / "run"
    first = killed(f"step:{step}", config, run)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert not run.exists() and (tmp_path / ".run.staging" / "checkpoints").is_dir()
    if strategy in WRITE_KILLED:
        second = killed(f"write:{write}", config, run, "--resume")
        assert second.returncode == -signal.SIGKILL, second.stderr
        assert "resuming from" in second.stderr
        assert any(p.name.startswith(".tmp-") for p in (tmp_path / ".run.staging" / "checkpoints").iterdir())

    result = runner.invoke(app, ["train", str(config), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert_bit_identical(reference, run)
    if strategy == "full+mlm":  # the base model's scores too: the checkpoint is loaded after they are taken
        metrics = [json.loads((d / "test_metrics.json").read_text()) for d in (reference, run)]
        assert "base_perplexity" in metrics[0] and {k: v for k, v in metrics[0].items() if k != "forgetting"} == \
            {k: v for k, v in metrics[1].items() if k != "forgetting"}
    if strategy == "full+ewc":  # the Fisher was estimated once, by the first process, and read back when resuming
        assert torch.equal(*(load_file(str(d / "guards" / "fisher.safetensors"))["network.bert.embeddings.word_embeddings.weight"]
                             for d in (reference, run)))
        assert json.loads((run / "manifest.json").read_text())["guard"]["fisher"].startswith("read back")
    if strategy == "full+distill":  # the reference run computed the teacher's logits; the resumed one read them
        assert json.loads((run / "manifest.json").read_text())["distill"]["teacher_logits"]["computed"] == 0
    during = f", then during checkpoint file write {write}" if strategy in WRITE_KILLED else ""
    print(f"{strategy}: killed after step {step}{during}: bit-identical")


def test_corrupted_checkpoint_is_skipped_with_a_warning(full_reference: tuple[Path, Path], tmp_path: Path) -> None:
    config, reference = full_reference
    run = tmp_path / "run"
    assert killed("step:15", config, run).returncode == -signal.SIGKILL
    checkpoints = sorted((tmp_path / ".run.staging" / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["step-00000009-end", "step-00000012"]
    weights = checkpoints[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated

    result = runner.invoke(app, ["train", str(config), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "step-00000012 is unusable (model.safetensors has 1000 bytes" in " ".join(result.output.split())
    assert "resuming from" in result.output and "step-00000009-end" in result.output
    assert_bit_identical(reference, run)


def test_sigterm_checkpoints_and_says_how_to_resume(full_reference: tuple[Path, Path], tmp_path: Path) -> None:
    config, reference = full_reference
    run = tmp_path / "run"
    stopped = killed("term:6", config, run)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    message = " ".join(stopped.stderr.split())
    assert "SIGTERM received: stopped after step 6" in message and "Traceback" not in message
    assert f"Resume with: tunelab train {config} --resume {run}" in message
    assert (tmp_path / ".run.staging" / "checkpoints" / "step-00000006").is_dir()
    result = runner.invoke(app, ["train", str(config), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "step 6)" in result.output
    assert_bit_identical(reference, run)


def test_resume_refuses_a_changed_config_and_a_finished_run(full_reference: tuple[Path, Path], tmp_path: Path) -> None:
    config, reference = full_reference
    run = tmp_path / "run"
    assert killed("step:5", config, run).returncode == -signal.SIGKILL
    result = runner.invoke(app, ["train", str(config), "--resume", str(run), "--set", "optim.lr=0.1"])
    assert result.exit_code == 2 and "optim.lr: 0.003 -> 0.1" in " ".join(result.output.split())
    result = runner.invoke(app, ["train", str(config), "--out", str(run)])
    assert result.exit_code == 2 and "continue it with --resume" in " ".join(result.output.split())
    result = runner.invoke(app, ["train", "--resume", str(reference)])
    assert result.exit_code == 2 and "nothing to resume" in " ".join(result.output.split())
