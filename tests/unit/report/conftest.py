"""Real tiny run directories of every report kind (trained once per session, a few seconds each) and a compare
directory of the shape `tunelab compare` writes, built from real tiny runs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import sentiment_rows, write_csv
from tests.unit.tasks.test_instruction import make_tiny_llama, qa_rows
from tests.unit.tasks.test_token_classification import ner_rows


def _train(raw: dict) -> Path:
    from tunelab.catalog import parse_config
    from tunelab.orchestration.train import train

    summary = train(parse_config(raw))
    return Path(summary.run_dir)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def report_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="session")
def text_run(tiny_bert: Path, report_root: Path) -> Callable[..., Path]:
    """Factory: a tiny-BERT run of `task` on made-up data, 2 epochs, into report_root/name."""
    def make(name: str, task: str = "classification", *, strategy: str = "full", seed: int = 0, rows: int = 120,
             out: Path | None = None, **data: object) -> Path:
        folder = report_root / f"data-{name}"
        folder.mkdir(exist_ok=True)
        metric = {"classification": "macro_f1", "regression": "mse", "token_classification": "entity_f1"}[task]
        if task == "classification":
            train, column = write_csv(folder / "train.csv", sentiment_rows(rows, seed=1)), "label"
        elif task == "regression":
            rng = random.Random(2)
            made = [{"text": " ".join(["good"] * k + ["the", "film"]), "score": float(k)}
                    for k in (rng.randint(0, 3) for _ in range(rows))]
            train, column = _jsonl(folder / "train.jsonl", made), "score"
        else:
            train, column = _jsonl(folder / "train.jsonl", ner_rows(rows)), "label"
        raw = {"model": str(tiny_bert), "task": task, "strategy": {"name": strategy},
               "data": {"train": str(train), "max_length": 8, "label_column": column, **data}, "optim": {"lr": 1e-2},
               "train": {"epochs": 2, "batch_size": 8, "seed": seed}, "early_stopping": {"metric": metric},
               "output": str(out or report_root / name)}
        if task == "token_classification":
            del raw["data"]["label_column"]
        return _train(raw)
    return make


@pytest.fixture(scope="session")
def classification_run(text_run: Callable[..., Path]) -> Path:
    return text_run("classification")


@pytest.fixture(scope="session")
def regression_run(text_run: Callable[..., Path]) -> Path:
    return text_run("regression", "regression", rows=60)


@pytest.fixture(scope="session")
def token_run(text_run: Callable[..., Path]) -> Path:
    return text_run("token", "token_classification", rows=60)


@pytest.fixture(scope="session")
def image_run(tiny_vision_dir: Path, report_root: Path) -> Path:
    raw = {"model": str(tiny_vision_dir), "task": "image_classification", "head": {"type": "linear"},
           "data": {"builtin": "digits", "limit": 80}, "optim": {"lr": 3e-3},
           "train": {"epochs": 1, "batch_size": 16}, "early_stopping": {"metric": "accuracy"},
           "output": str(report_root / "image")}
    return _train(raw)


@pytest.fixture(scope="session")
def instruction_run(report_root: Path) -> Path:
    model = make_tiny_llama(report_root / "tiny-llama")
    data = _jsonl(report_root / "qa.jsonl", qa_rows(15))
    raw = {"model": str(model), "task": "instruction_tuning",
           "data": {"train": str(data), "validation_split": 0.2, "test_split": 0.2, "max_length": 64},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3}, "schedule": {"name": "constant"},
           "train": {"epochs": 3, "batch_size": 4, "seed": 0}, "generation": {"max_new_tokens": 4},
           "output": str(report_root / "instruction")}
    return _train(raw)


def _row(compare_dir: Path, run: Path, strategy: str, seed: int, fraction: float) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    test = json.loads((run / "test_metrics.json").read_text())
    return {"name": run.name, "strategy": strategy, "seed": seed, "data_fraction": fraction, "status": "done",
            "error": None, "test": test, "best_validation": manifest["best_metric"],
            "trainable_params": manifest["trainable_params"], "total_params": manifest["total_params"],
            "train_time_s": manifest["train_time_s"], "wall_time_s": manifest["train_time_s"] + 0.5,
            "peak_rss_mb": manifest["peak_rss_mb"], "model_bytes": 12345, "epochs_run": manifest["epochs_run"],
            "run_dir": f"runs/{run.name}", "forgetting": None}


def _summary(rows: list[dict]) -> list[dict]:
    import statistics

    out = []
    for key in dict.fromkeys((r["strategy"], r["data_fraction"]) for r in rows if r["status"] == "done"):
        group = [r for r in rows if (r["strategy"], r["data_fraction"]) == key and r["status"] == "done"]
        values = [r["test"]["macro_f1"] for r in group]
        out.append({"strategy": key[0], "data_fraction": key[1], "mean": statistics.fmean(values),
                    "std": statistics.pstdev(values), "n": len(values), "within_noise_of_best": True,
                    "train_time_s": statistics.fmean(r["train_time_s"] for r in group),
                    "trainable_params": group[0]["trainable_params"], "model_bytes": 12345})
    return out


@pytest.fixture(scope="session")
def compare_dir(text_run: Callable[..., Path], report_root: Path) -> Path:
    """compare.json over real tiny runs: full and bitfit at all the data (full with 2 seeds) and at half, one
    failed row and one skipped strategy; the runs live under runs/ as compare writes them."""
    folder = report_root / "compare"
    (folder / "runs").mkdir(parents=True)
    rows = []
    for strategy, seed, fraction in (("full", 0, 1.0), ("full", 1, 1.0), ("full", 0, 0.5), ("bitfit", 0, 1.0),
                                     ("bitfit", 0, 0.5)):
        name = f"{strategy}-s{seed}" + ("" if fraction == 1.0 else "-f0.5")
        run = text_run(name, strategy=strategy, seed=seed, rows=int(60 * fraction), out=folder / "runs" / name)
        rows.append(_row(folder, run, strategy, seed, fraction))
    (folder / "runs" / "bitfit-s0-f0.5" / "report.html").unlink()  # a row whose report is missing: no link
    rows.append({**rows[0], "name": "lora-s0", "strategy": "lora", "status": "failed", "error": "out of <memory>",
                 "test": {}, "run_dir": "runs/lora-s0"})
    data = {"metric": "macro_f1", "config": {}, "rows": rows, "skipped": [{"strategy": "ia3", "reason": "not offered"}],
            "summary": _summary(rows), "verdict": {"strategy": "bitfit", "reason": "within noise of full, cheaper"},
            "noise_test": "paired bootstrap over test examples (1000 resamples)"}
    (folder / "compare.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tune_dir(tiny_bert: Path, report_root: Path) -> Path:
    """A real `tunelab tune` of the tiny model: 4 head trials, median pruning."""
    from tunelab.orchestration.tune import TuneRequest, tune

    data = write_csv(report_root / "tune-train.csv", sentiment_rows(80))
    raw = {"model": str(tiny_bert), "data": {"train": str(data), "max_length": 16, "validation_split": 0.2,
                                             "test_split": 0.2},
           "strategy": {"name": "head"}, "train": {"epochs": 3, "batch_size": 8, "precision": "fp32"}}
    tune(raw, TuneRequest(out=report_root / "tune", trials=4, sampler="random"))
    return report_root / "tune"


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    """A copy of a session run directory a test may change."""
    def copy(run: Path) -> Path:
        return Path(shutil.copytree(run, tmp_path / run.name))
    return copy
