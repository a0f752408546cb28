"""The bad-input corpus: every malformed config, data file, model directory and checkpoint under tests/badinput/
(plus a few generated at test time) run through the real CLI. Each must give exit code 2, one message naming
the file / row / key and what to do, no traceback, and leave an existing output directory unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tunelab.cli import app

CORPUS = Path(__file__).resolve().parents[2] / "badinput"
KILLER = Path(__file__).resolve().parents[1] / "training" / "kill_run.py"
SRC = Path(__file__).resolve().parents[3] / "src"
runner = CliRunner()


@dataclass
class Env:
    tmp: Path
    model: Path
    train: Path

    @property
    def out(self) -> Path:
        return self.tmp / "run"

    def base(self, **data: object) -> dict:
        return {"model": str(self.model), "data": {"train": str(self.train), "max_length": 16, **data},
                "train": {"epochs": 2, "batch_size": 8, "seed": 0, "checkpoint_every_steps": 4, "num_threads": 1,
                          "precision": "fp32"},  # the killed subprocess and the resume here must agree
                "output": str(self.out)}

    def write(self, raw: dict, name: str = "config.yaml") -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return path

    def corpus_config(self, name: str) -> Path:
        text = (CORPUS / "configs" / name).read_bytes()
        for key, value in {"@MODEL@": self.model, "@TRAIN@": self.train, "@BAD@": CORPUS / "data", "@OUT@": self.out}.items():
            text = text.replace(key.encode(), str(value).encode())
        path = self.tmp / name
        path.write_bytes(text)
        return path

    def model_copy(self, drop: tuple[str, ...] = ()) -> Path:
        path = self.tmp / "model"
        shutil.copytree(self.model, path, ignore=shutil.ignore_patterns(*drop))
        return path


@dataclass
class Case:
    id: str
    args: Callable[[Env], list[str]]
    expect: list[str]
    resume: bool = False
    extra: dict = field(default_factory=dict)


def config_case(name: str, *expect: str) -> Case:
    return Case(name, lambda env: ["train", str(env.corpus_config(f"{name}.yaml")), "--overwrite"], list(expect))


def data_case(id: str, file: str, *expect: str, key: str = "train", **data: object) -> Case:
    def args(env: Env) -> list[str]:
        raw = env.base(**data)
        raw["data"][key] = str(CORPUS / "data" / file)
        if data.get("label_column") == "score":
            raw["task"] = "regression"
            raw["early_stopping"] = {"metric": "rmse"}
        return ["train", str(env.write(raw)), "--overwrite"]
    return Case(id, args, [file, *expect])


def model_case(id: str, make: Callable[[Env], Path], *expect: str) -> Case:
    def args(env: Env) -> list[str]:
        raw = env.base()
        raw["model"] = str(make(env))
        return ["train", str(env.write(raw)), "--overwrite"]
    return Case(id, args, list(expect))


def checkpoint_case(id: str, damage: Callable[[Path], None], *expect: str) -> Case:
    def args(env: Env) -> list[str]:
        shutil.copytree(env.tmp.parent / "killed" / ".run.staging", env.tmp / ".run.staging")
        damage(env.tmp / ".run.staging" / "checkpoints")
        return ["train", str(env.write(env.base())), "--resume", str(env.out)]
    return Case(id, args, list(expect), resume=True)


# -- model directories ---------------------------------------------------------------------------------
def vit_config(env: Env) -> Path:
    path = env.model_copy()
    (path / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
                                                  "num_attention_heads": 2, "intermediate_size": 64,
                                                  "image_size": 32, "patch_size": 8}))
    return path


def pickle_only(env: Env) -> Path:
    path = env.model_copy(drop=("*.safetensors",))
    torch.save(load_file(str(env.model / "model.safetensors")), path / "pytorch_model.bin")
    return path


def garbage_weights(env: Env) -> Path:
    path = env.model_copy()
    (path / "model.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 10)
    return path


# -- checkpoints ---------------------------------------------------------------------------------------
def truncate_all(root: Path) -> None:
    for ckpt in root.iterdir():
        weights = ckpt / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])


def rewrite(root: Path, change: Callable[[dict], dict]) -> None:
    """Replace the latest checkpoint's weights and fix its manifest hash, as a tool copying files around would."""
    ckpt = sorted(p for p in root.iterdir() if not p.name.startswith("."))[-1]
    weights = ckpt / "model.safetensors"
    save_file(change(load_file(str(weights))), str(weights))
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    manifest["files"]["model.safetensors"] = {"sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                                              "bytes": weights.stat().st_size}
    (ckpt / "checkpoint.json").write_text(json.dumps(manifest))


def wrong_shapes(root: Path) -> None:
    rewrite(root, lambda t: {k: (v[:-1] if "classifier.weight" in k else v) for k, v in t.items()})


def other_model(root: Path) -> None:
    for ckpt in root.iterdir():
        manifest = json.loads((ckpt / "checkpoint.json").read_text())
        manifest["state"]["identity"]["base_model_sha256"] = "0" * 64
        (ckpt / "checkpoint.json").write_text(json.dumps(manifest))


def huge_line(env: Env) -> list[str]:
    """A 50 MB first line with no delimiter: generated here, never committed."""
    path = env.tmp / "huge.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("word " * (10 * 1024 * 1024) + "\ngood movie\n")
    raw = env.base()
    raw["data"]["train"] = str(path)
    return ["train", str(env.write(raw)), "--overwrite"]


CASES = [
    # configs
    config_case("unknown_key", "unknown_key.yaml", "optim.learning_rate: unknown key (did you mean 'lr'?)"),
    config_case("unknown_section", "trian: unknown key (did you mean 'train'?)"),
    config_case("wrong_type_epochs", "train.epochs", "'three'"),
    config_case("wrong_type_batch", "train.batch_size", "[8]"),
    config_case("negative_lr", "optim.lr", "greater than 0", "-0.001"),
    config_case("split_out_of_range", "data.validation_split", "less than 1", "1.5"),
    config_case("checkpoint_every_zero", "train.checkpoint_every_steps", "greater than or equal to 1"),
    config_case("builtin_and_train", "data.builtin and data.train are exclusive", "keep one of them"),
    config_case("two_warmups", "schedule", "not both"),
    config_case("freeze_blocks_with_full", "strategy", "apply to strategy partial"),
    config_case("unknown_strategy", "strategy.name", "unknown strategy 'lorra'", "choose one of"),
    config_case("metric_for_wrong_task", "early_stopping.metric 'macro_f1' is not computed for task regression"),
    config_case("missing_train_file", "no_such_file.csv: file does not exist", "check the path"),
    config_case("invalid_yaml", "invalid_yaml.yaml:", "invalid YAML", "fix the syntax"),
    config_case("top_level_list", "top_level_list.yaml", "must be a mapping of sections"),
    config_case("not_utf8", "not_utf8.yaml", "not UTF-8", "save the file as UTF-8"),
    Case("missing_config_file", lambda env: ["train", str(env.tmp / "nope.yaml")], ["nope.yaml: config file not found"]),
    Case("bad_set_override", lambda env: ["train", str(env.write(env.base())), "--set", "optim.lr"],
         ["--set 'optim.lr'", "key.path=value"]),
    # data files
    data_case("wrong_delimiter", "semicolon.csv", "delimiter is ';'"),
    data_case("missing_label_column", "no_label_column.csv", "no label column 'label'", "label_column"),
    data_case("extra_column", "extra_field.csv", ":row 2", "3 fields but the header has 2", "quote such fields"),
    data_case("missing_column_in_row", "missing_field.csv", ":row 1", "1 fields but the header has 2"),
    data_case("empty_file", "empty.csv", "file is empty"),
    data_case("header_only", "header_only.csv", "no data rows"),
    data_case("undecodable_bytes", "latin1.csv", ":line 3", "not valid UTF-8", "re-save it as UTF-8"),
    data_case("unknown_test_label", "unknown_test_label.csv", "'meh'", key="test"),
    data_case("nan_target", "nan_target.csv", ":row 2", label_column="score"),
    data_case("duplicate_ids", "duplicate_ids.csv", ":row 3", "id '1'", "already used at row 1", id_column="id"),
    data_case("jsonl_missing_text", "missing_text.jsonl", ":line 2", "no text column 'text'"),
    data_case("jsonl_broken_line", "broken.jsonl", ":line 2", "invalid JSON"),
    data_case("unsupported_suffix", "table.xlsx", "unsupported file type '.xlsx'"),
    Case("data_is_a_directory", lambda env: ["train", str(env.write(env.base(train=str(CORPUS / "data")))), "--overwrite"],
         ["is a directory, not a data file"]),
    Case("line_of_50_mb", huge_line, ["huge.csv:header", "no text column 'text'"]),
    # model directories
    model_case("model_missing_config", lambda env: env.model_copy(drop=("config.json",)), "has no config.json"),
    model_case("model_missing_weights", lambda env: env.model_copy(drop=("*.safetensors",)), "no *.safetensors weights"),
    model_case("model_pickle_only", pickle_only, "pytorch_model.bin", "pickle", "--trust-pickle"),
    model_case("model_wrong_architecture", vit_config, "cannot load", "vit"),
    model_case("model_corrupt_weights", garbage_weights, "model.safetensors", "cannot load"),
    model_case("model_not_found", lambda env: env.tmp / "no-model", "neither a built-in model", "directory"),
    # checkpoints
    checkpoint_case("checkpoint_truncated", truncate_all, "is unusable", "truncated", "no usable checkpoint"),
    checkpoint_case("checkpoint_wrong_shapes", wrong_shapes, "classifier.weight has shape (1, 32)", "another model"),
    checkpoint_case("checkpoint_from_another_model", other_model, "other base-model weights", "start a new run"),
    Case("resume_nothing", lambda env: ["train", str(env.write(env.base())), "--resume"], ["no unfinished run"],
         resume=True),
]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


@pytest.fixture(scope="module")
def killed_run(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unfinished run (SIGKILL after step 6 of 2 x 9) whose checkpoints the checkpoint cases damage."""
    root = tmp_path_factory.mktemp("badinput")
    env = Env(root / "killed", tiny_bert, sentiment_csv)
    env.tmp.mkdir()
    config = env.write(env.base())
    pythonpath = f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    done = subprocess.run([sys.executable, str(KILLER), "step:6", "train", str(config)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": pythonpath}, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return root


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, killed_run: Path, tiny_bert: Path, sentiment_csv: Path) -> None:
    env = Env(killed_run / case.id, tiny_bert, sentiment_csv)
    env.tmp.mkdir()
    if not case.resume:
        env.out.mkdir()
        (env.out / "keep.txt").write_text("an earlier run")
    args = case.args(env)
    staging = env.tmp / ".run.staging"
    before, staged_before = tree(env.out), tree(staging)

    result = runner.invoke(app, args)
    output = " ".join(result.output.split())
    print(f"{case.id}: {output}")
    assert result.exit_code == 2, output
    assert "Traceback" not in result.output and output.count("error:") == 1
    assert len(output) < 2000, "the message must stay short (no echo of huge input)"
    for fragment in case.expect:
        assert fragment in output, fragment
    assert tree(env.out) == before, "the existing output directory changed"
    assert tree(staging) == staged_before, "the unfinished run changed"
