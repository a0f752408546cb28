"""`tunelab tune`: an Optuna search whose trials share everything that does not train.

One prepared run (one read, split and tokenisation), the base model built once and copied into every trial
(Prepared.build_model), and the activation cache on disk read by every trial whose frozen depth it covers:
a trial costs little more than the part that trains. The study lives in `DIR/study.db` (Optuna's SQLite
storage, so `optuna.load_study` opens it and `--resume` continues it); each trial is a run directory
`DIR/trials/<n>/` selected on its validation score; the test split is scored once, for the best trial
only, after the search.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rich.console import Console

from tunelab.artifacts.rundir import RunDirectory
from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.catalog import parse_config, require_single_task
from tunelab.config.loading import apply_overrides, as_override, config_to_yaml
from tunelab.errors import ConfigError, RunInterrupted, TunelabError
from tunelab.optional import require
from tunelab.orchestration.experiment_dir import check_experiment_out, write_experiment_report
from tunelab.orchestration.prepare import Prepared, prepare
from tunelab.orchestration.run_one import run_one
from tunelab.orchestration.score import score_test
from tunelab.orchestration.tune_space import Dimension, check_space, default_space, load_space, suggest
from tunelab.training.callbacks import metric_mode
from tunelab.training.callbacks.pruning import PruningCallback
from tunelab.training.callbacks.tracking import tracking_parent

__all__ = ["TuneRequest", "TuneResult", "tune", "SAMPLERS", "PRUNERS"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")


@dataclass
class TuneRequest:
    out: Path
    trials: int
    space: Optional[Path] = None
    metric: Optional[str] = None
    timeout_min: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "median"
    resume: bool = False
    overwrite: bool = False
    trust_pickle: bool = False


@dataclass
class TuneResult:
    out: Path
    metric: str
    direction: str
    best: Optional[dict[str, Any]]
    trials: list[dict[str, Any]]
    wall_time_s: float


def tune(raw: dict[str, Any], request: TuneRequest, *, console: Optional[Console] = None,
         source: str = "<config>") -> TuneResult:
    """Search `raw`'s hyperparameters as `request` says; the best trial's config goes to DIR/best.yaml."""
    require("tunelab tune", "optuna", error=ConfigError)
    import optuna

    console = console or Console(stderr=True)
    started = time.perf_counter()
    raw = _with_metric(raw, request.metric)
    base = parse_config(raw, source=source)
    require_single_task(base, "tune")
    metric = base.early_stopping.metric or "loss"
    check_experiment_out(request.out, resume=request.resume, overwrite=request.overwrite, marker="study.db",
                         noun="search", replaces="start over", clear=True)
    prepared = prepare(base, trust_pickle=request.trust_pickle, console=console)
    space = load_space(request.space) if request.space else default_space(prepared.config, prepared.depth(base))
    check_space(raw, space, source)
    request.out.mkdir(parents=True, exist_ok=True)
    direction = "maximize" if metric_mode(metric, base.early_stopping.mode) == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{request.out / 'study.db'}", study_name="tunelab",
                                direction=direction, sampler=_sampler(request, space, base.train.seed),
                                pruner=_pruner(request.pruner), load_if_exists=request.resume)
    _fail_stale(study)
    objective = _Objective(raw, source, prepared, space, metric, request, console)
    remaining = request.trials - _counted(study)
    if remaining > 0:
        with tracking_parent(base, f"tune {request.out.name}"):  # MLflow: the trials nest under one run
            study.optimize(objective, n_trials=remaining, catch=(TunelabError, ValueError, RuntimeError),
                           timeout=None if request.timeout_min is None else 60 * request.timeout_min,
                           gc_after_trial=True)
    return _finish(study, prepared, metric, direction, request, console, time.perf_counter() - started)


class _Objective:
    """One trial: its values into the config, a run_one into DIR/trials/<n>/ without the test split, the
    best validation score back to the study (or TrialPruned when the pruner stopped it)."""

    def __init__(self, raw: dict[str, Any], source: str, prepared: Prepared, space: dict[str, Dimension],
                 metric: str, request: TuneRequest, console: Console) -> None:
        self.raw, self.source, self.prepared, self.space = raw, source, prepared, space
        self.metric, self.request, self.console = metric, request, console

    def __call__(self, trial: Any) -> float:
        import optuna

        values = suggest(trial, self.space)
        run_dir = RunDirectory(self.request.out / "trials" / str(trial.number), overwrite=True)
        overrides = [as_override(k, v) for k, v in values.items()] + [as_override("output", str(run_dir.target))]
        config = parse_config(apply_overrides(self.raw, overrides), source=f"trial {trial.number}")
        self.console.rule(f"trial {trial.number}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()))
        pruning = PruningCallback(trial, self.metric)
        trial.set_user_attr("run_dir", str(Path("trials") / str(trial.number)))
        try:
            summary = run_one(self.prepared, config, run_dir=run_dir, console=self.console, callbacks=[pruning],
                              test=False, keep_model=lambda: pruning.pruned_at is None)
        except RunInterrupted:
            raise
        trial.set_user_attr("train_time_s", round(summary.train_time_s, 2))
        trial.set_user_attr("epochs_run", summary.epochs_run)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        best = json.loads((run_dir.target / "manifest.json").read_text(encoding="utf-8")).get("best_metric")
        if best is None:
            raise TunelabError(f"trial {trial.number}: no validation {self.metric} was computed (is there a "
                               "validation split?); tune selects on it")
        return float(best)


def _with_metric(raw: dict[str, Any], metric: Optional[str]) -> dict[str, Any]:
    return apply_overrides(raw, [as_override("early_stopping.metric", metric)]) if metric else raw


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _sampler(request: TuneRequest, space: dict[str, Dimension], seed: int) -> Any:
    import optuna

    if request.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if request.sampler == "grid":
        return optuna.samplers.GridSampler({k: _grid(k, d) for k, d in space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _grid(key: str, d: Dimension) -> list[Any]:
    """A grid needs listed values: choices, or an integer range with its step."""
    if d.choices is not None:
        return list(d.choices)
    if d.is_int:
        return list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))  # type: ignore[arg-type]
    raise ConfigError(f"--sampler grid: {key} is a continuous range; give it choices: [...] in --space")


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _counted(study: Any) -> int:
    """Trials that count towards --trials: finished or pruned (a failed trial is retried)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _fail_stale(study: Any) -> None:
    """A trial left RUNNING by a killed sweep never finishes: mark it failed so --resume runs another."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


def _finish(study: Any, prepared: Prepared, metric: str, direction: str, request: TuneRequest, console: Console,
            wall_time_s: float) -> TuneResult:
    """Score the best trial on the test split (once), write best.yaml and tune.json."""
    trials = [_trial_row(t) for t in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = None
    if done:
        number = study.best_trial.number
        run_dir = request.out / "trials" / str(number)
        test = score_test(prepared, run_dir)
        config = parse_config(json.loads(json.dumps(_run_config(run_dir))))
        best_config = config.model_copy(update={"output": str(request.out / "best-run")})
        atomic_write_text(request.out / "best.yaml", config_to_yaml(best_config))
        best = {**next(t for t in trials if t["number"] == number), "test": test}
    result = TuneResult(request.out, metric, direction, best, trials, wall_time_s)
    atomic_write_json(request.out / "tune.json", {"metric": metric, "direction": direction, "best": best,
                                                  "trials": trials, "wall_time_s": round(wall_time_s, 2),
                                                  "sampler": request.sampler, "pruner": request.pruner,
                                                  "importances": _importances(study),
                                                  "importance_method": _IMPORTANCE_METHOD})
    write_experiment_report(request.out, console, "search")
    return result


_IMPORTANCE_METHOD = "optuna.importance.get_param_importances (Optuna's default evaluator) over the finished trials"


def _importances(study: Any) -> dict[str, float]:
    """Which parameters the score depended on; empty with too few finished trials to tell."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "importances will be equal" with a handful of trials
            return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def _run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))


def _trial_row(trial: Any) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "intermediate": {str(k): v for k, v in trial.intermediate_values.items()},
            "duration_s": duration, **trial.user_attrs}
