"""Validating a config imports neither torch nor transformers: `tunelab validate` answers in the time it takes
to read YAML and check a schema, not the time it takes to load PyTorch (about 1.4 s of its 2.6 s before).

Each check runs in a fresh interpreter (this test process has long imported torch), once through
`catalog.load_config` and once through the CLI's `validate` command, for configs that reach every registry
path validation takes: the demo, a PEFT method with its section, the token and instruction tasks (whose
modules hold losses and model builders), and an invalid config whose errors are still all reported. The
catalog imports every registered task and PEFT method, so a new one that imports torch at its top fails here:
its layers go to `strategies/peft/<name>_layers.py`, a task's torch into the methods that compute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.configs import DEMO_CONFIG

SRC = Path(__file__).resolve().parents[3] / "src"
HEAVY = ("torch", "transformers", "peft", "safetensors", "mlflow", "tensorboard")

CONFIGS: dict[str, str] = {
    "lora": "data: {builtin: bbc-news}\nstrategy:\n  name: lora\n  lora: {rank: 4, target_modules: [query]}\n",
    "ia3": "data: {builtin: bbc-news}\nstrategy: {name: ia3, freeze_blocks: 2, ia3: {target_modules: [key]}}\n",
    "token": "task: ner\ndata: {train: tags.jsonl}\nstrategy: {name: houlsby}\nearly_stopping: {metric: entity_f1}\n",
    "instruction": "model: smollm2\ntask: instruction_tuning\ndata: {train: chat.jsonl, max_length: 256}\n"
                   "strategy: {name: lora, lora: {target_modules: [q_proj, v_proj]}}\n",
    # the trackers are found installed without importing them (mlflow alone takes a second)
    "tracking": "data: {builtin: bbc-news}\ntracking: {tensorboard: true, mlflow: {tracking_uri: 'file:./mlruns', "
                "experiment: bbc}}\n",
    "image": "task: image_classification\ndata: {train: images.csv, image_size: 64}\nstrategy: {name: full}\n",
    # a multi-task config: each task's rules through its own single-task config, every task's registry entry
    "multitask": "tasks:\n  - {name: news, data: {builtin: bbc-news}}\n  - {name: q, task: multilabel, data: "
                 "{train: q.csv, label_delimiter: '|'}, head: {type: mlp}}\nmixing: {name: temperature}\n"
                 "strategy: {name: lora}\n",
    "invalid": "task: instruction_tuning\ndata: {builtin: bbc-news}\nhead: {type: mlp}\n"
               "strategy: {name: lora, r: 8, lora: {rank: 0}, ia3: {}}\nearly_stopping: {metric: accuracy}\n",
}
INVALID_LINES = ("strategy.lora.rank", "strategy.r: unknown key", "strategy.ia3 is given", "head.type",
                 "early_stopping.metric 'accuracy'")

CHECK = """
import sys
{call}
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
assert not heavy, f"validating imported {{heavy}}"
print("LIGHT")
"""
LIBRARY = ("from tunelab.catalog import load_config\nfrom tunelab.errors import ConfigError\n"
           "try:\n    load_config({path!r})\n    print('VALID')\n"
           "except ConfigError as err:\n    print('INVALID', err)\n")
# the CLI as `tunelab validate` runs it; typer's standalone mode exits, so the exit is caught and the check follows
CLI = ("from tunelab.cli.main import app\n"
       "try:\n    app(['validate', {path!r}])\nexcept SystemExit as done:\n    print('EXIT', done.code)\n")


def run_checked(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def config_path(name: str, tmp_path: Path) -> Path:
    if name == "demo":
        return DEMO_CONFIG
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIGS[name], encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["demo", *CONFIGS])
def test_load_config_imports_no_torch(name: str, tmp_path: Path) -> None:
    path = config_path(name, tmp_path)
    done = run_checked(CHECK.format(call=LIBRARY.format(path=str(path)), heavy=HEAVY), tmp_path)
    assert done.returncode == 0 and "LIGHT" in done.stdout, done.stdout + done.stderr
    if name == "invalid":
        assert "INVALID" in done.stdout and all(line in done.stdout for line in INVALID_LINES), done.stdout
    else:
        assert "VALID" in done.stdout.split(), done.stdout


@pytest.mark.parametrize("name", ["demo", "lora", "multitask", "invalid"])
def test_cli_validate_imports_no_torch(name: str, tmp_path: Path) -> None:
    path = config_path(name, tmp_path)
    done = run_checked(CHECK.format(call=CLI.format(path=str(path)), heavy=HEAVY), tmp_path)
    assert "LIGHT" in done.stdout, done.stdout + done.stderr
    if name == "invalid":
        assert "EXIT 2" in done.stdout and all(line in done.stderr for line in INVALID_LINES), done.stderr
    else:
        assert "EXIT 0" in done.stdout and "valid" in done.stdout, done.stdout + done.stderr


def test_the_cli_module_imports_no_torch(tmp_path: Path) -> None:
    done = run_checked(CHECK.format(call="import tunelab.cli.main", heavy=HEAVY), tmp_path)
    assert done.returncode == 0 and "LIGHT" in done.stdout, done.stderr
