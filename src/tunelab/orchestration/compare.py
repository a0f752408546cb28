"""`tunelab compare`: every strategy on the user's data, side by side, from one prepared run.

The data is read, split and tokenised once and the backbone loaded once; each row (a strategy, a seed, a
data fraction) is a `run_one` into its own ordinary run directory `DIR/runs/<row>/`, reading the shared
activation cache. The split is the config's (its seed pins `data.split_seed`), so seeds vary the training
and never the test set. `compare.json` is rewritten after every row: a killed comparison shows what it
finished, and `--resume` skips those rows and continues the unfinished one from its checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

from tunelab.artifacts.rundir import FINISHED_MARKER, RunDirectory, staging_path
from tunelab.catalog import parse_config, require_single_task
from tunelab.config.loading import apply_overrides, as_override
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError, RunInterrupted, TunelabError
from tunelab.orchestration.cache_warm import warm_cache
from tunelab.orchestration.compare_summary import CompareResult, summarize, write_compare_outputs
from tunelab.orchestration.forgetting import forgetting_summary
from tunelab.orchestration.outputs import reset_peak_rss
from tunelab.orchestration.experiment_dir import check_experiment_out, write_experiment_report
from tunelab.orchestration.prepare import Prepared, prepare
from tunelab.orchestration.run_one import run_one
from tunelab.strategies.recommended import COMPARE_ORDER, recommended_settings
from tunelab.strategies.registry import DISTILL_KEY, strategy_names
from tunelab.training.callbacks.tracking import tracking_parent

__all__ = ["CompareRequest", "RowPlan", "compare", "plan_rows", "row_name"]


@dataclass
class CompareRequest:
    out: Path
    strategies: Optional[list[str]] = None      # None: every registered strategy that applies
    seeds: list[int] = field(default_factory=lambda: [0])
    fractions: list[float] = field(default_factory=lambda: [1.0])
    overrides: list[str] = field(default_factory=list)   # `--set`: `k=v` for all rows, `<strategy>.k=v` for one
    resume: bool = False
    overwrite: bool = False
    trust_pickle: bool = False
    fraction_budget: str = "steps"  # a fraction's row trains the whole split's optimizer steps ("epochs": its epochs)


@dataclass
class RowPlan:
    name: str
    strategy: str
    seed: int
    fraction: float
    config: RunConfig


def row_name(strategy: str, seed: int, fraction: float, request: CompareRequest) -> str:
    """`<strategy>[-s<seed>][-f<fraction>]`: the seed and fraction only where the comparison varies them."""
    name = strategy
    if len(request.seeds) > 1:
        name += f"-s{seed}"
    if len(request.fractions) > 1 or fraction != 1.0:
        name += f"-f{fraction:g}"
    return name


def compare(raw: dict[str, Any], request: CompareRequest, *, console: Optional[Console] = None,
            source: str = "<config>") -> CompareResult:
    """Run every row of the comparison of `raw` (a config mapping, before overrides) as `request` says."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    base = parse_config(apply_overrides(raw, _global_overrides(request)), source=source)
    require_single_task(base, "compare")
    check_experiment_out(request.out, resume=request.resume, overwrite=request.overwrite, marker="compare.json",
                         noun="comparison", replaces="replace its rows")
    request.out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(base.model_copy(update={"data": base.data.model_copy(update={"train_fraction": 1.0})}),
                       trust_pickle=request.trust_pickle, console=console)
    rows, skipped = plan_rows(raw, base, request, prepared.depth(base))
    for item in skipped:
        console.print(f"[yellow]skip[/] {item['strategy']}: {escape(item['reason'])}")
    _warm(prepared, rows, request, console)
    records: list[dict[str, Any]] = []
    with tracking_parent(base, f"compare {request.out.name}") as parent:  # MLflow: the rows nest under one run
        for i, row in enumerate(rows, start=1):
            if any(s["strategy"] == row.strategy for s in skipped):
                continue
            console.rule(f"[{i}/{len(rows)}] {row.name}")
            record = _run_row(prepared, row, request, console, skipped)
            if record is not None:
                records.append(record)
            write_compare_outputs(summarize(request.out, base, records, skipped, time.perf_counter() - started), base)
        result = summarize(request.out, base, records, skipped, time.perf_counter() - started)
        write_compare_outputs(result, base)
        if parent is not None:
            parent.log_artifacts(request.out / "compare.json", request.out / "compare.csv")
    write_experiment_report(request.out, console, "comparison")
    return result


def _warm(prepared: Prepared, rows: list[RowPlan], request: CompareRequest, console: Console) -> None:
    """Every frozen prefix the rows still to run will read, built before the first of them: one capture pass
    per training split for all depths (head, partial and gradual rows share it), where each row alone would
    run its own pass."""
    todo = [row.config for row in rows
            if not (request.resume and (request.out / "runs" / row.name / FINISHED_MARKER).is_file())]
    warm = warm_cache(prepared, todo)
    if warm is None:
        return
    for note in warm["notes"]:
        console.print(f"activation cache: {escape(note)}")
    if warm["depths"]:
        console.print(f"activation cache for the rows' frozen blocks (depths {', '.join(map(str, warm['depths']))}): "
                      f"{escape(warm['summary'])} ({warm['seconds']:.1f} s)", highlight=False)


def plan_rows(raw: dict[str, Any], base: RunConfig, request: CompareRequest,
              num_blocks: int) -> tuple[list[RowPlan], list[dict[str, str]]]:
    """The rows (fraction, then strategy, then seed) and the strategies that do not apply, with the reason
    their config rules give (e.g. `head` for a decoder LM)."""
    names = _strategies(request)
    rows, skipped = [], []
    for strategy in names:
        try:
            configs = [(seed, fraction, _row_config(raw, base, request, strategy, seed, fraction, num_blocks))
                       for fraction in request.fractions for seed in request.seeds]
        except ConfigError as err:
            skipped.append({"strategy": strategy, "reason": _reason(err)})
            continue
        rows += [RowPlan(row_name(strategy, seed, fraction, request), strategy, seed, fraction, config)
                 for seed, fraction, config in configs]
    rows.sort(key=lambda r: (request.fractions.index(r.fraction), names.index(r.strategy), r.seed))
    return rows, skipped


def _strategies(request: CompareRequest) -> list[str]:
    known = strategy_names()
    if request.strategies is None:
        return [s for s in COMPARE_ORDER if s in known] + [s for s in known if s not in COMPARE_ORDER]
    unknown = [s for s in request.strategies if s not in known]
    if unknown:
        raise ConfigError(f"--strategies: unknown {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    return list(dict.fromkeys(request.strategies))


def _row_config(raw: dict[str, Any], base: RunConfig, request: CompareRequest, strategy: str, seed: int,
                fraction: float, num_blocks: int) -> RunConfig:
    """The row's config: the user's, the strategy's recommended settings, then the user's `--set` for all
    rows and for this strategy; the split pinned to the config's seed. `strategy.distill` is kept: every row
    is then a student of the same teacher (whose logits they share through the cache)."""
    row = copy.deepcopy(raw)
    distill = (raw.get("strategy") or {}).get(DISTILL_KEY) if isinstance(raw.get("strategy"), dict) else None
    row["strategy"] = {"name": strategy, **({DISTILL_KEY: distill} if distill is not None else {})}
    row = _set_values(row, recommended_settings(strategy, num_blocks=num_blocks, epochs=base.train.epochs))
    row = apply_overrides(row, _global_overrides(request) + _strategy_overrides(request, strategy))
    row = _set_values(row, {"train.seed": seed, "data.split_seed": base.split_seed, "data.train_fraction": fraction,
                            "output": str(request.out / "runs" / row_name(strategy, seed, fraction, request))})
    config = parse_config(row, source=f"compare row {strategy}")
    if fraction < 1 and request.fraction_budget == "steps":
        config = parse_config(_set_values(row, same_steps(config, fraction)), source=f"compare row {strategy}")
    return config


def same_steps(config: RunConfig, fraction: float) -> dict[str, Any]:
    """What a row on `fraction` of the training split changes to train the optimizer steps of the row on all of
    it: its epochs, gradual's unfreezing interval and early stopping's patience, each times 1/fraction (rounded
    up), so schedules, unfreezing and patience span the same steps. With the epochs fixed, a 10% row ran a tenth
    of the steps and strategies stopped before they had learnt (BBC News, 3 epochs: full fine-tuning 0.41
    macro-F1 on 10% of the articles; several predicted one class on other sets), which measured the budget,
    not the data a strategy needs."""
    scale = lambda n: math.ceil(n / fraction - 1e-9)  # noqa: E731
    values: dict[str, Any] = {"train.epochs": scale(config.train.epochs)}
    if config.strategy.name == "gradual":
        values["strategy.unfreeze_every"] = scale(config.strategy.unfreeze_every)
    if config.early_stopping.patience is not None:
        values["early_stopping.patience"] = scale(config.early_stopping.patience)
    return values


def _set_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return apply_overrides(raw, [as_override(key, value) for key, value in values.items()])


def _global_overrides(request: CompareRequest) -> list[str]:
    names = set(strategy_names())
    return [o for o in request.overrides if o.partition(".")[0] not in names]


def _strategy_overrides(request: CompareRequest, strategy: str) -> list[str]:
    return [o.partition(".")[2] for o in request.overrides if o.partition(".")[0] == strategy]


def _reason(err: ConfigError) -> str:
    """The rule a strategy breaks, without the file header of a config error."""
    lines = [line.strip(" -*•") for line in str(err).splitlines()[1:] if line.strip()]
    return "; ".join(lines) or str(err)


def _run_row(prepared: Prepared, row: RowPlan, request: CompareRequest, console: Console,
             skipped: list[dict[str, str]]) -> Optional[dict[str, Any]]:
    """One row: read back when finished before (with --resume), else run (resumed from its checkpoint when
    it has one). A row that fails becomes a row with its error; a strategy the model refuses is skipped."""
    run_dir = RunDirectory(request.out / "runs" / row.name, overwrite=request.overwrite and not request.resume)
    if request.resume and (run_dir.target / FINISHED_MARKER).is_file():
        console.print(f"{row.name}: finished earlier, read from {run_dir.target}")
        return _row_record(row, run_dir.target, request.out)
    resume = request.resume and (staging_path(run_dir.target) / "checkpoints").is_dir()
    reset_peak_rss()
    try:
        run_one(prepared, row.config, run_dir=run_dir, resume=resume, console=console)
    except (RunInterrupted, KeyboardInterrupt):
        raise
    except ConfigError as err:  # the strategy does not apply to this model (found when compiling)
        skipped.append({"strategy": row.strategy, "reason": str(err)})
        console.print(f"[yellow]skip[/] {row.strategy}: {escape(str(err))}")
        return None
    except Exception as err:  # noqa: BLE001 - one failing strategy must not stop the others
        console.print(f"[red]{row.name} failed:[/] {escape(type(err).__name__)}: {escape(str(err))}")
        return {**_row_head(row, request.out), "status": "failed", "error": f"{type(err).__name__}: {err}"}
    return _row_record(row, run_dir.target, request.out)


def _row_head(row: RowPlan, out: Path) -> dict[str, Any]:
    return {"name": row.name, "strategy": row.strategy, "seed": row.seed, "data_fraction": row.fraction,
            "run_dir": str(Path("runs") / row.name), "forgetting": None}


def _row_record(row: RowPlan, target: Path, out: Path) -> dict[str, Any]:
    """A finished row as compare.json lists it, read from its run directory's files (so a resumed comparison
    and a fresh one describe rows the same way)."""
    import json

    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    test_path = target / "test_metrics.json"
    test = json.loads(test_path.read_text(encoding="utf-8")) if test_path.is_file() else {}
    model_bytes = sum(p.stat().st_size for p in (target / "model").rglob("*") if p.is_file())
    return {**_row_head(row, out), "status": "done", "error": None, "test": test,
            "best_validation": manifest.get("best_metric"), "trainable_params": manifest["trainable_params"],
            "total_params": manifest["total_params"], "train_time_s": manifest["train_time_s"],
            "wall_time_s": manifest.get("wall_time_s"), "peak_rss_mb": manifest.get("peak_rss_mb"),
            "model_bytes": model_bytes, "epochs_run": manifest["epochs_run"],
            "forgetting": forgetting_summary(test.get("forgetting"))}


def check_request(request: CompareRequest) -> None:
    """The command line's values, before any work."""
    if not request.seeds:
        raise TunelabError("--seeds: give at least one seed (0,1,2)")
    if request.fraction_budget not in ("steps", "epochs"):
        raise TunelabError(f"--fraction-budget: steps or epochs, got {request.fraction_budget!r}")
    bad = [f for f in request.fractions if not 0 < f <= 1]
    if bad or not request.fractions:
        raise TunelabError(f"--data-fractions: each must be in (0, 1], got {bad or 'none'}")
