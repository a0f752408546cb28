"""torchrun DDP and FSDP on CPU (gloo): two processes of batch B/2 train the weights one process of batch B does,
only rank 0 writes the run directory, evaluation gathered from both ranks gives the single-process figures, and
FSDP's ranks each hold half the training state DDP's hold whole."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import make_tiny_bert, sentiment_rows, train_via_cli, write_csv
from tunelab.data.encoding import Batch
from tunelab.errors import TunelabError
from tunelab.training.distributed import Distributed, from_environment

LEGS = {  # strategy, cache: full and partial recomputing, partial from the activation cache, LoRA
    "full": ({"name": "full"}, "off"),
    "partial": ({"name": "partial", "freeze_blocks": 1}, "off"),
    "partial-cached": ({"name": "partial", "freeze_blocks": 1}, "auto"),
    "lora": ({"name": "lora", "lora": {"dropout": 0.0}}, "off"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny BERT without dropout (the ranks draw dropout masks for their own rows) and its data."""
    root = tmp_path_factory.mktemp("ddp")
    model = make_tiny_bert(root / "bert")
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    return model, write_csv(root / "train.csv", sentiment_rows(110))  # 66 train rows: a last batch of 2


def _config(inputs: tuple[Path, Path], leg: str, folder: Path, grad_accum_steps: int = 1,
            validation_split: float = 0.2) -> Path:
    strategy, cache = LEGS[leg]
    raw = {"model": str(inputs[0]), "task": "classification", "strategy": strategy, "head": {"dropout": 0.0},
           "data": {"train": str(inputs[1]), "max_length": 16, "validation_split": validation_split, "test_split": 0.2},
           "optim": {"lr": 3e-3}, "forgetting": {"measure": False}, "report": False,
           # the CPU (gloo) path on every machine: on a one-GPU machine two ranks would need two GPUs
           "train": {"epochs": 2, "batch_size": 8, "seed": 0, "precision": "fp32", "cache": cache,
                     "grad_accum_steps": grad_accum_steps, "device": "cpu"}}
    path = folder / f"{leg}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _two_processes(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(out.parent / "scratch")}
    (out.parent / "scratch").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "tunelab", "train", str(config), "--out", str(out), "--nproc", "2",
                           *extra], capture_output=True, text=True, env=env, timeout=300)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(glob.glob(str(run / "model" / "*.safetensors"))):
        tensors.update({f"{Path(file).name}:{k}": v for k, v in load_file(file).items()})
    return tensors


def _logged(run: Path) -> list[tuple[tuple, float]]:
    """(kind, epoch, step) and loss of each metrics.jsonl line."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [((r["kind"], r.get("epoch"), r.get("step")), r["loss"]) for r in lines if "loss" in r]


SHARDED = ("full", "lora")  # the legs FSDP also trains: it shards full and PEFT strategies


def _listing(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if "checkpoints" not in p.parts)


# `partial` recomputing its frozen block is left to the LoRA leg (frozen parameters DDP must not reduce) and to
# partial-cached (a frozen prefix): two processes start per leg, the suite's costliest tests
@pytest.mark.parametrize("leg", [leg for leg in LEGS if leg != "partial"])
def test_two_ranks_train_the_weights_of_one_process(inputs: tuple[Path, Path], tmp_path: Path, leg: str) -> None:
    """DDP against one process; for full and LoRA also FSDP against DDP, holding half the training state. With
    gradient accumulation (reduced once per optimizer step) and one validation batch (FSDP's rank 1 runs an
    idle forward beside rank 0's)."""
    config = _config(inputs, leg, tmp_path, grad_accum_steps=2, validation_split=0.1)
    done = _two_processes(config, tmp_path / "two")  # first: with the cache, rank 0 builds while rank 1 waits
    assert done.returncode == 0, done.stderr[-3000:]
    if LEGS[leg][1] == "auto":
        assert re.search(r"\b[1-9]\d* entries built .* 2 processes built them together", done.stderr, re.S), \
            done.stderr[-2000:]
    train_via_cli(config, "--out", str(tmp_path / "one"))
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys() and one
    assert max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5
    first, second = (json.loads((tmp_path / run / "test_metrics.json").read_text()) for run in ("one", "two"))
    assert first["accuracy"] == second["accuracy"] and first["loss"] == pytest.approx(second["loss"], abs=1e-5)
    logged = [_logged(tmp_path / run) for run in ("one", "two")]  # rank 0 logs the loss reduced over ranks
    assert [k for k, _ in logged[0]] == [k for k, _ in logged[1]] and logged[0]
    assert [v for _, v in logged[0]] == pytest.approx([v for _, v in logged[1]], abs=1e-5)
    assert _listing(tmp_path / "one") == _listing(tmp_path / "two")  # the same run directory, written once
    assert not list((tmp_path / "scratch").glob("tunelab-rank*"))  # rank 1's scratch folder is gone
    if leg in SHARDED:
        _check_fsdp_against_ddp(config, tmp_path / "two", tmp_path / "fsdp")


def test_two_ranks_distil_as_one_process(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """strategy.distill under torchrun: rank 0 computes the teacher's logits while rank 1 waits, then reads them;
    each rank's rows pick their own teacher rows, so two ranks train the weights one process does."""
    config = _config(inputs, "full", tmp_path)
    train_via_cli(config, "--out", str(tmp_path / "teacher"))
    raw = yaml.safe_load(config.read_text())
    raw["strategy"]["distill"] = {"teacher": str(tmp_path / "teacher"), "temperature": 2.0, "alpha": 0.7}
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    done = _two_processes(config, tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher logits computed" in done.stderr
    train_via_cli(config, "--out", str(tmp_path / "one"))
    reports = [json.loads((tmp_path / run / "manifest.json").read_text())["distill"] for run in ("two", "one")]
    assert [r["teacher_logits"]["computed"] for r in reports] == [66, 0]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys() and max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5


def _check_fsdp_against_ddp(config: Path, ddp_run: Path, run: Path) -> None:
    done = _two_processes(config, run, "--set", "train.distributed=fsdp")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (FSDP)" in done.stderr
    ddp, fsdp = _weights(ddp_run), _weights(run)  # the run directory's own format, whole tensors
    assert ddp.keys() == fsdp.keys() and max(float((ddp[k] - fsdp[k]).abs().max()) for k in ddp) <= 1e-5
    scores = [json.loads((r / "test_metrics.json").read_text()) for r in (ddp_run, run)]
    assert scores[0]["accuracy"] == scores[1]["accuracy"] and scores[0]["loss"] == pytest.approx(scores[1]["loss"], abs=1e-5)
    assert _listing(ddp_run) == _listing(run)
    manifests = [json.loads((r / "manifest.json").read_text()) for r in (ddp_run, run)]
    assert [m["distributed"] for m in manifests] == ["ddp", "fsdp"]
    held = manifests[1]["training_state_mb"] / manifests[0]["training_state_mb"]
    assert 0.45 <= held <= 0.6, held  # parameters, gradients and moments: each rank a half (and padding)


def test_fsdp_is_refused_for_a_frozen_prefix_naming_the_key(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    from tunelab.catalog import parse_config

    raw = yaml.safe_load(_config(inputs, "partial", tmp_path).read_text())
    raw["train"]["distributed"] = "fsdp"
    with pytest.raises(TunelabError, match="train.distributed: fsdp shards full and PEFT strategies, not partial"):
        parse_config(raw)


def test_a_batch_the_world_does_not_divide_is_refused_naming_the_key(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    config = _config(inputs, "full", tmp_path)
    done = _two_processes(config, tmp_path / "two", "--set", "train.batch_size=7")
    assert done.returncode != 0
    assert "train.batch_size: 7 does not divide among 2 processes" in done.stderr
    assert re.search(r"rank [01] stopped with exit code", done.stderr)  # both refuse; the first to exit is named
    assert not (tmp_path / "two").exists()


def test_from_environment_checks_the_batch_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(TunelabError, match="give a multiple of 4"):
        from_environment("auto", torch.device("cpu"), batch_size=6)
    assert not from_environment("off", torch.device("cpu"), batch_size=6).active  # off: each process alone


def test_a_rank_without_a_row_of_the_last_batch_adds_nothing() -> None:
    batch = Batch({"input_ids": torch.arange(6).view(3, 2)}, torch.tensor([0, 1, 0]), torch.tensor([7, 8, 9]))
    ranks = [Distributed(rank=r, world_size=4) for r in range(4)]
    shares = [d.share(batch) for d in ranks]
    assert [s.indices.tolist() for s in shares] == [[7], [8], [9], [7]]  # rank 3 stands in with row 0
    scales = [d.loss_scale(s, len(batch), 8) for d, s in zip(ranks, shares)]
    assert scales == [0.5, 0.5, 0.5, 0.0]  # DDP's mean over 4 ranks: 3 rows of 8, as one process would weigh them
    assert Distributed().loss_scale(batch, len(batch), 8) == 3 / 8


KILLER = Path(__file__).with_name("kill_run.py")


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_a_rank_killed_mid_run_resumes_bit_identical(inputs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    """SIGKILL on rank 1 after its 6th step (torchrun takes rank 0 down); `--resume --nproc 2` from the step-4
    checkpoint ends as the unbroken 2-process run, with BERT's dropout on: each rank draws its own masks, and
    its RNG streams are in the checkpoint. FSDP's checkpoint holds whole tensors, cut into shards again."""
    config = _config(inputs, "full", tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["model"] = str(make_tiny_bert(tmp_path / "bert"))  # hidden and attention dropout 0.1
    raw["train"].update(epochs=3, checkpoint_every_steps=4, distributed=mode)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    unbroken = _two_processes(config, tmp_path / "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(KILLER), "rank1@step:6", "train", str(config), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode != 0 and not (tmp_path / "run").exists()
    assert re.search(r"Root Cause.*?rank\s*:\s*1 \(local_rank: 1\).*?SIGKILL", killed.stderr, re.S)  # named
    assert (tmp_path / ".run.staging" / "checkpoints").is_dir(), killed.stderr[-3000:]
    resumed = _two_processes(config, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    one, two = _weights(tmp_path / "unbroken"), _weights(tmp_path / "run")
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    assert _logged(tmp_path / "unbroken") == _logged(tmp_path / "run")


def test_a_port_in_use_is_refused_before_any_process_starts(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    import socket

    config = _config(inputs, "full", tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _two_processes(config, tmp_path / "two", "--port", str(port))
    assert done.returncode != 0 and f"--port {port}: the port is in use on this machine" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "two").exists()
