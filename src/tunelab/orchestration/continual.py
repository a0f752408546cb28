"""`tunelab continual`: tasks learnt one after another, per strategy, with the matrix R of every earlier task's
test score after each step.

Each task is prepared once (read, split, tokenised) and every strategy's step on it is a `run_one` into
`DIR/runs/<strategy>/<n>-<task>/`. A chained strategy (`full`, `full+ewc`) starts each task from the backbone
the previous task left (`model.init_from`), with a fresh head of its own; its guard holds the earlier runs
(`strategy.guard.runs`: EWC's Fishers, replay's data through their own heads). A per-task strategy
(`lora-per-task`) starts every task from the base: an adapter library on one frozen base. After step j every
task i <= j is scored on its test split with the backbone of step j and its own head (its own run, for
per-task strategies), which is R[i][j].
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rich.console import Console

from tunelab.artifacts.model_io import load_run
from tunelab.artifacts.rundir import FINISHED_MARKER, RunDirectory
from tunelab.atomic import atomic_write_json
from tunelab.catalog import parse_config
from tunelab.config.loading import apply_overrides, as_override, config_to_yaml
from tunelab.config.schema import RunConfig
from tunelab.config.sequence import SequenceConfig, StrategySpec, parse_strategy_spec
from tunelab.errors import ConfigError
from tunelab.evaluation.continual import sequence_summary
from tunelab.inference.predict import predict_split
from tunelab.orchestration.experiment_dir import check_experiment_out, write_experiment_report
from tunelab.orchestration.init_from import backbone_state, load_backbone
from tunelab.orchestration.prepare import Prepared, prepare
from tunelab.orchestration.run_one import run_one
from tunelab.strategies.recommended import recommended_settings

__all__ = ["ContinualRequest", "continual", "RESULT_FILE"]

RESULT_FILE = "continual.json"
_HELD_RUNS = ("ewc", "replay")  # the guards that read the earlier runs themselves


@dataclass
class ContinualRequest:
    out: Path
    resume: bool = False
    overwrite: bool = False


def continual(spec: SequenceConfig, request: ContinualRequest, *, console: Optional[Console] = None) -> dict[str, Any]:
    """Every strategy of `spec` over its tasks in order; continual.json and report.html in `request.out`."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    check_experiment_out(request.out, resume=request.resume, overwrite=request.overwrite, marker=RESULT_FILE,
                         noun="sequence", replaces="start over", clear=True)
    prepared = [prepare(_task_config(spec, j, "full"), console=console) for j in range(len(spec.tasks))]
    request.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"metric": spec.metric, "tasks": [t.name for t in spec.tasks], "strategies": []}
    shared: dict[str, Path] = {}  # a step's config (without output) -> the run that trained it already
    for strategy in spec.specs:
        console.rule(f"[bold]{strategy.spec}[/]")
        result["strategies"].append(_run_strategy(spec, strategy, prepared, request, console, shared))
        _write(request.out, result, started)
    write_experiment_report(request.out, console, "sequence")
    return result


def _write(out: Path, result: dict[str, Any], started: float) -> None:
    atomic_write_json(out / RESULT_FILE, {**result, "wall_time_s": round(time.perf_counter() - started, 2)})


def _task_config(spec: SequenceConfig, j: int, strategy: str, values: Optional[dict[str, Any]] = None,
                 num_blocks: int = 0) -> RunConfig:
    """Task j's run config for `strategy` (a spec of strategies:): the strategy's recommended settings, under
    the sequence's `run:` section, which wins, under its `settings:` for this spec, then `values` (the
    step's own: init_from, guard, output)."""
    name = parse_strategy_spec(strategy).name
    task = spec.tasks[j]
    raw: dict[str, Any] = copy.deepcopy(spec.run)
    raw.update({"model": copy.deepcopy(spec.model), "task": task.task, "data": copy.deepcopy(task.data),
                "strategy": {"name": name}})
    if isinstance(raw["model"], str):
        raw["model"] = {"name": raw["model"]}
    epochs = int(raw.get("train", {}).get("epochs", 3))
    own = spec.settings.get(strategy, {})
    defaults = {k: v for k, v in recommended_settings(name, num_blocks=num_blocks, epochs=epochs).items()
                if not _has(spec.run, k)}
    raw = apply_overrides(raw, [as_override(k, v) for k, v in {**defaults, **own, **(values or {})}.items()])
    return parse_config(raw, source=f"sequence task {task.name} ({strategy})")


def _has(raw: dict[str, Any], key: str) -> bool:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _run_strategy(spec: SequenceConfig, strategy: StrategySpec, prepared: list[Prepared], request: ContinualRequest,
                  console: Console, shared: dict[str, Path]) -> dict[str, Any]:
    """The tasks in order with one strategy; its R matrix, summary and steps."""
    count = len(spec.tasks)
    r: list[list[Optional[float]]] = [[None] * count for _ in range(count)]
    runs: list[Path] = []
    steps = []
    for j in range(count):
        config = _step_config(spec, strategy, j, runs, prepared[j], request.out)
        run_dir, reused = _train_step(prepared[j], config, runs, strategy, request, console, shared)
        runs.append(run_dir)
        started = time.perf_counter()
        scores = _score_step(strategy, j, runs, prepared, spec.metric)
        for i, row in enumerate(scores):
            r[i][j] = row[spec.metric]
        steps.append({"task": spec.tasks[j].name, "run_dir": str(run_dir.relative_to(request.out)),
                      "shared_with": reused, "scores": scores, "score_s": round(time.perf_counter() - started, 2),
                      **_run_facts(run_dir)})
        console.print(f"{strategy.spec} after {spec.tasks[j].name}: " + ", ".join(
            f"{spec.tasks[i].name} {r[i][j]:.4f}" for i in range(j + 1)))
    return {"spec": strategy.spec, "strategy": strategy.name, "guard": strategy.guard, "per_task": strategy.per_task,
            "R": r, "summary": sequence_summary(r), "steps": steps,
            "train_time_s": round(sum(s["train_time_s"] or 0 for s in steps if not s["shared_with"]), 2)}


def _step_config(spec: SequenceConfig, strategy: StrategySpec, j: int, runs: list[Path], prepared: Prepared,
                 out: Path) -> RunConfig:
    """Step j's config: chained strategies start from the last run and guard the earlier ones; a per-task
    strategy starts from the base, unguarded. The first task has nothing earlier to guard."""
    values: dict[str, Any] = {"output": str(out / "runs" / strategy.spec / f"{j + 1}-{spec.tasks[j].name}")}
    chained = not strategy.per_task and j > 0
    if chained:
        values["model.init_from"] = str(runs[-1])
    if strategy.guard and chained:
        guard = {"name": strategy.guard, **spec.guards.get(strategy.guard, {})}
        if strategy.guard in _HELD_RUNS:
            guard["runs"] = [str(run) for run in runs]
        values["strategy.guard"] = guard
    num_blocks = prepared.depth(prepared.config)
    return _task_config(spec, j, strategy.spec, values, num_blocks)


def _train_step(prepared: Prepared, config: RunConfig, runs: list[Path], strategy: StrategySpec,
                request: ContinualRequest, console: Console, shared: dict[str, Path]) -> tuple[Path, Optional[str]]:
    """Train the step (or find it: finished before with --resume, or the very same config trained already by
    another strategy, e.g. every chained strategy's unguarded first task); its run directory."""
    key = config_to_yaml(config.model_copy(update={"output": ""}))
    if key in shared:
        console.print(f"{strategy.spec}: the same run as {shared[key].relative_to(request.out)}, reused")
        return shared[key], str(shared[key].relative_to(request.out))
    run_dir = RunDirectory(Path(config.output), overwrite=request.overwrite and not request.resume)
    if not (request.resume and (run_dir.target / FINISHED_MARKER).is_file()):
        start = Path(config.model.init_from) if config.model.init_from else None
        run_one(prepared.starting_from(start), config, run_dir=run_dir, console=console)
    shared[key] = run_dir.target
    return run_dir.target, None


def _score_step(strategy: StrategySpec, j: int, runs: list[Path], prepared: list[Prepared],
                metric: str) -> list[dict[str, float]]:
    """Test scores of tasks 0..j after step j: each task's own head on step j's backbone (chained), or each
    task's own run (per task: the base is never changed, which this measures rather than assumes)."""
    state = None if strategy.per_task or j == 0 else backbone_state(runs[j], prepared[j].config)
    scores = []
    for i in range(j + 1):
        model = load_backbone(load_run(runs[i]).model, state if i < j else None, str(runs[j]))
        scores.append(_test_scores(model, prepared[i], metric))
    return scores


def _test_scores(model: Any, prepared: Prepared, metric: str) -> dict[str, float]:
    test, config = prepared.encoded["test"], prepared.config
    predictions, _ = predict_split(model.to(prepared.device), test, prepared.task, prepared.label_names,
                                   batch_size=config.train.evaluation_batch_size,
                                   pad_id=prepared.tokenizer.pad_token_id or 0, device=prepared.device,
                                   precision=config.train.precision)
    metrics = prepared.task.metrics(test, predictions, prepared.label_names)
    if metric not in metrics:
        raise ConfigError(f"metric: {metric!r} is not a test metric of task {prepared.task.name}; choose one of: "
                          f"{', '.join(k for k, v in metrics.items() if isinstance(v, float))}")
    return {k: round(float(v), 6) for k, v in metrics.items() if isinstance(v, (int, float))}


def _run_facts(run_dir: Path) -> dict[str, Any]:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    test = json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8")) if \
        (run_dir / "test_metrics.json").is_file() else {}
    forgetting = test.get("forgetting") or {}
    return {"train_time_s": manifest.get("train_time_s"), "wall_time_s": manifest.get("wall_time_s"),
            "trainable_params": manifest.get("trainable_params"), "guard": manifest.get("guard"),
            "peak_rss_mb": manifest.get("peak_rss_mb"), "forgetting": {k: forgetting.get(k) for k in
                                                                       ("weight_drift", "cka", "retention")}}
