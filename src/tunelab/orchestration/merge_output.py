"""The run directory a merge writes, an ordinary one: `config.yaml` (the first run's as prepared: task, data,
columns, head; strategy `full` where that run was a PEFT one, since `model/` holds whole weights), `labels.json`,
`model/` (a plain Hugging Face directory, or the backbone plus the tunelab head), `manifest.json`,
`test_metrics.json`, `predictions.csv` and `report.html` (the written model loaded back and scored on the test
split, as `tunelab predict` loads it), `merge.json` and the model card. Built in the staging folder and moved
into place only when all of it is written (artifacts/rundir.py): a failure leaves no half output."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunelab.artifacts.manifest import build_manifest
from tunelab.artifacts.model_card import CARD_NAME, write_model_card
from tunelab.artifacts.model_io import LoadedRun, save_hf_model
from tunelab.artifacts.rundir import RunDirectory
from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.config.schema import RunConfig, StrategyConfig
from tunelab.models.loading import count_parameters
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.outputs import write_run_start
from tunelab.orchestration.prepare import Prepared
from tunelab.orchestration.score import score_test
from tunelab.strategies.registry import peft_method

__all__ = ["write_merge_dir", "merged_config", "MERGE_RECORD"]

MERGE_RECORD = "merge.json"


def merged_config(config: RunConfig, target: Path) -> RunConfig:
    """The merge's config.yaml: what loads and scores its model (task, data, head, precision), the output its
    own; a PEFT strategy becomes `full` because the merged model is whole weights."""
    strategy = StrategyConfig(name="full") if peft_method(config.strategy.name) is not None else config.strategy
    return config.model_copy(update={"output": str(target), "strategy": strategy})


def write_merge_dir(run_dir: RunDirectory, prepared: Prepared, model: TaskModel, source: LoadedRun,
                    record: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    """Write the merged `model` with `record` into `run_dir`; returns merge.json's record (with the test metrics
    of the model as written, and the cost). `seconds`: the load and search times, and the perf_counter readings
    when the merge started and when its test scoring did."""
    staging = run_dir.open()
    try:
        config = merged_config(prepared.config, run_dir.target)
        write_run_start(staging, config, prepared.label_names)
        save_hf_model(model.cpu(), source.tokenizer, staging / "model", config)
        _write_manifest(staging, prepared, config, model, record, time.perf_counter() - seconds["started"])
        test = score_test(prepared, staging)  # test_metrics.json, predictions.csv, report.html
        timing = {"load_s": seconds["load"], "search_s": seconds["search"],
                  "test_s": time.perf_counter() - seconds["tested"], "total_s": time.perf_counter() - seconds["started"]}
        record = {**record, "test": test, "seconds": {k: round(v, 2) for k, v in timing.items()}}
        atomic_write_json(staging / MERGE_RECORD, record)
        write_model_card(staging, {name: len(prepared.encoded[name]) for name in ("train", "validation", "test")})
        _add_card_section(staging, record)
    except BaseException:
        run_dir.abandon()
        raise
    run_dir.commit()
    return record


def _write_manifest(staging: Path, prepared: Prepared, config: RunConfig, model: TaskModel, record: dict[str, Any],
                    wall_s: float) -> None:
    _, total = count_parameters(model)
    manifest = build_manifest(
        seed=config.train.seed, data_hashes=prepared.data_hashes, base_model=str(prepared.model_dir),
        base_model_hash=prepared.base_model_hash,
        extra={"strategy": f"merge ({record['method']})", "total_params": total, "device": prepared.device.type,
               "precision": config.train.precision, "wall_time_s": round(wall_s, 2),
               "merge": {"method": record["method"], "runs": [r["run"] for r in record["runs"]],
                         "chosen": record["chosen"]}})
    atomic_write_json(staging / "manifest.json", manifest)


def _add_card_section(staging: Path, record: dict[str, Any]) -> None:
    card = staging / "model" / CARD_NAME
    chosen = ", ".join(f"{k} {v}" for k, v in record["chosen"].items() if k not in ("validation", "validation_loss",
                                                                                      "seconds"))
    section = (f"\n## Merge\n\nThis model is a `{record['method']}` merge (`tunelab merge`) of "
               f"{len(record['runs'])} runs of one base model, chosen on the validation split ({record['metric']}): "
               f"{chosen}. The config above is the first run's; `merge.json` in the run directory lists the runs, the "
               "validation score of every point searched, and the test metrics of the merge and of each run.\n")
    atomic_write_text(card, card.read_text(encoding="utf-8") + section)
