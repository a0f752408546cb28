"""What `tunelab tune` costs: N trials of a search against one cold run of the same config, and against
Hugging Face `Trainer.hyperparameter_search` (Optuna backend) with the same space, trials and epochs.

    python benchmarks/tune_cost.py                                  # the issue's settings: all of BBC News
    python benchmarks/tune_cost.py --limit 100 --max-length 32 --epochs 1 --partial-epochs 1 \\
        --head-trials 2 --partial-trials 2 --peer-precision fp32     # a smoke run (minutes)

Legs, each a subprocess timed wall-clock by this script from its start to its exit (imports, reading and
tokenising, model loading, every trial, scoring the best on the test split: what a user waits for):

- head train: one cold `tunelab train` of the head config (the demo's data and settings, strategy head at
  its recommended lr, `--epochs` epochs, every epoch run: no early stopping).
- head tune: `tunelab tune` of that config, `--head-trials` trials over tune's default head space (written
  to SPACE.yaml and passed with --space, so the peer gets the very same one), TPE seeded, `--pruner`.
  Target: at most 2x the cold run.
- partial train / partial tune: the same for the demo's partial config (its recommended settings) with
  `--partial-epochs` epochs and `--partial-trials` trials over the default partial space (freeze depth and
  layer-wise decay included). Target: at most 6x the cold run.
- peer: `Trainer.hyperparameter_search(backend="optuna")` on the head config: a `model_init` freezing all
  but the pooler and classifier (tunelab's head), an `hp_space` drawing the same key paths from the same
  ranges in the same order (`tune_space.suggest`) and mapping them onto TrainingArguments, the same TPE
  seed and pruner, evaluation every epoch, macro-F1 from `compute_metrics`. Run at Trainer's default fp32
  and, where the CPU has bf16 units, at bf16=True (tunelab's `precision: auto` is bf16 there). Target: at
  least 5x tunelab's head tune, with a best validation score at least as good.

The validation score of a trial is its best epoch for both tools: tunelab restores and reports its best
epoch; the peer's objective returns the best of the trial's evaluations so far (Trainer reports the last
one; restoring the best would need a checkpoint every epoch, which the peer at its best settings skips).

Every process gets a fresh, empty cache root (TUNELAB_CACHE) whose `models/` links to the real model cache,
so only the activation cache is cold. Ratios are against legs measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from common import load_sibling

LEGS = ("head", "partial", "peer")
# the issue's targets: tune / one cold run at most this; peer / tunelab head tune at least this
TARGETS = {"head": 2.0, "partial": 6.0, "peer": 5.0}
# tunelab key path -> the TrainingArguments field the peer's hp_space sets. warmup_steps: Trainer casts a
# searched value to the type of the field's current value, so the field must start as a float (a ratio)
PEER_FIELDS = {"optim.lr": "learning_rate", "schedule.warmup_ratio": "warmup_steps",
               "optim.weight_decay": "weight_decay"}


def _compare_cost():
    """benchmarks/compare_cost.py: its processes, cold caches and Trainer peer settings."""
    return load_sibling("compare_cost")


# -- configs, spaces and commands -------------------------------------------------------------------
def num_blocks(model: str) -> int:
    """The backbone's depth, which the strategies' recommended settings and default spaces depend on."""
    from transformers import AutoConfig

    from tunelab.models.loading import resolve_model_dir

    return AutoConfig.from_pretrained(resolve_model_dir(model)).num_hidden_layers


def strategy_config(args: argparse.Namespace, strategy: str, blocks: int) -> dict[str, Any]:
    """The demo's config with `strategy` at its recommended settings and this run's budget. No early
    stopping: every trial and the cold run train all their epochs, so the trial count is like for like."""
    import yaml

    from tunelab.config.loading import apply_overrides
    from tunelab.configs import DEMO_CONFIG
    from tunelab.config.loading import as_override
    from tunelab.strategies.recommended import recommended_settings

    epochs = args.epochs if strategy == "head" else args.partial_epochs
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["strategy"] = {"name": strategy}
    # the peer freezes all but AutoModelForSequenceClassification's pooler + classifier: the same head for both
    raw["head"] = {"type": "native"}
    raw["data"].update({"limit": args.limit, "max_length": args.max_length})
    raw["train"].update({"batch_size": args.batch_size, "seed": args.seed, "precision": args.precision,
                         "num_threads": args.threads})
    raw["early_stopping"] = {"metric": args.metric, "patience": None}
    raw["output"] = f"runs/tune-cost-{strategy}"
    settings = recommended_settings(strategy, num_blocks=blocks, epochs=epochs)
    settings["train.epochs"] = epochs  # the budget is this run's, not the recommended multiple of it
    return apply_overrides(raw, [as_override(k, v) for k, v in settings.items()])


def search_space(raw: dict[str, Any], blocks: int) -> dict[str, Any]:
    """tune's default space for the config's strategy (what `tunelab tune` would search without --space)."""
    from tunelab.catalog import parse_config
    from tunelab.orchestration.tune_space import default_space

    return default_space(parse_config(raw), blocks)


def write_inputs(raw: dict[str, Any], space: dict[str, Any], work: Path, name: str) -> tuple[Path, Path]:
    """CONFIG.yaml and SPACE.yaml for one strategy: the files every leg of it (and the peer) reads."""
    import yaml

    config, space_file = work / f"{name}.yaml", work / f"space-{name}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    space_file.write_text(yaml.safe_dump({k: d.model_dump(exclude_none=True) for k, d in space.items()},
                                         sort_keys=False), encoding="utf-8")
    return config, space_file


def tune_command(config: Path, space: Path, trials: int, pruner: str, out: Path) -> list[str]:
    return _compare_cost().tunelab_command("tune", str(config), "--trials", str(trials), "--space", str(space),
                                           "--sampler", "tpe", "--pruner", pruner, "--out", str(out))


def peer_command(config: Path, space: Path, trials: int, pruner: str, precision: str, threads: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", str(config), "--space", str(space),
            "--head-trials", str(trials), "--pruner", pruner, "--peer-precision", precision,
            "--threads", str(threads)]


# -- the tunelab legs -------------------------------------------------------------------------------
def run_train_leg(config: Path, work: Path, name: str, threads: int) -> dict[str, Any]:
    """One cold `tunelab train`: its wall time and the best validation score of its run."""
    cc = _compare_cost()
    out = work / f"{name}-train"
    env = cc.child_env(cc.fresh_cache(work / f"cache-{name}-train", model_cache()), threads)
    proc = cc.timed(cc.train_command(config, out), env, f"{name} train")
    leg: dict[str, Any] = {"wall_s": proc["process_wall_s"], "trials": 1, "pruned": 0, "error": proc.get("error")}
    manifest = out / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        leg.update(best_validation=data.get("best_metric"), train_time_s=data.get("train_time_s"))
    return leg


def run_tune_leg(config: Path, space: Path, trials: int, pruner: str, work: Path, name: str,
                 threads: int) -> dict[str, Any]:
    """One `tunelab tune` process with a cold activation cache; its trials read from DIR/tune.json."""
    cc = _compare_cost()
    out = work / f"{name}-tune"
    env = cc.child_env(cc.fresh_cache(work / f"cache-{name}-tune", model_cache()), threads)
    proc = cc.timed(tune_command(config, space, trials, pruner, out), env, f"{name} tune")
    leg: dict[str, Any] = {"wall_s": proc["process_wall_s"], "error": proc.get("error")}
    summary = out / "tune.json"
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        leg.update(trial_counts(t["state"] for t in data["trials"]))
        best = data.get("best") or {}
        leg.update(best_validation=best.get("value"), best_params=best.get("params"),
                   train_time_s=round(sum(t.get("train_time_s") or 0 for t in data["trials"]), 2))
    return leg


def trial_counts(states) -> dict[str, int]:
    """Trials run (finished or pruned: what --trials counts) and how many of them the pruner stopped."""
    states = list(states)
    return {"trials": sum(s in ("COMPLETE", "PRUNED") for s in states), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL")}


def model_cache() -> Path:
    """The real model cache, which every fresh cache root links to (only activations start cold)."""
    from tunelab.paths import model_cache_dir

    return model_cache_dir()


# -- the peer leg -----------------------------------------------------------------------------------
def run_peer_leg(config: Path, space: Path, trials: int, pruner: str, precision: str, work: Path,
                 threads: int) -> dict[str, Any]:
    """`Trainer.hyperparameter_search` in its own process at `precision`; its result line parsed."""
    cc = _compare_cost()
    env = cc.child_env(cc.fresh_cache(work / f"cache-peer-{precision}", model_cache()), threads)
    proc = cc.timed(peer_command(config, space, trials, pruner, precision, threads), env, f"peer {precision}")
    lines = [line for line in proc["stdout"].splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines else {}
    return {"wall_s": proc["process_wall_s"], "precision": precision,
            "error": proc.get("error") or (None if lines else "no result"), **result}


def peer_hp_space(space: dict[str, Any]):
    """Optuna trial -> TrainingArguments values: tune's own `suggest` (same names, ranges and order, so a
    seeded sampler draws what tunelab's draws), renamed to Trainer's fields."""
    from tunelab.orchestration.tune_space import suggest

    missing = sorted(set(space) - set(PEER_FIELDS))
    if missing:
        raise SystemExit(f"peer: no TrainingArguments field for {missing}; the peer searches {sorted(PEER_FIELDS)}")

    def hp_space(trial) -> dict[str, float]:
        return {PEER_FIELDS[key]: float(value) for key, value in suggest(trial, space).items()}

    return hp_space


class BestSoFar:
    """The peer's compute_objective: the best of the trial's evaluations so far, so a trial's value is its
    best epoch as tunelab's is (Trainer keeps the last evaluation's). Reset at every trial's start."""

    def __init__(self, metric: str, maximize: bool) -> None:
        self.key, self.maximize, self.best = f"eval_{metric}", maximize, None
        self.evaluations: list[float] = []

    def reset(self) -> None:
        self.best = None

    def __call__(self, metrics: dict[str, float]) -> float:
        value = float(metrics[self.key])
        self.evaluations.append(value)
        better = self.best is None or (value > self.best if self.maximize else value < self.best)
        self.best = value if better else self.best
        return self.best


def peer_arguments(config, precision: str, out: str):
    """compare_cost's TrainingArguments for the config, without best-epoch restore: the search reads its
    objective, not a restored model, so the peer saves no checkpoints (its best settings)."""
    stop = config.early_stopping.model_copy(update={"restore_best": False, "patience": None})
    args = _compare_cost().peer_arguments(config.model_copy(update={"early_stopping": stop}), precision, out)
    args.warmup_steps = float(args.warmup_steps)  # a ratio: the searched value is cast to this type
    return args


def peer_study(seed: int, pruner: str) -> dict[str, Any]:
    """create_study keyword arguments: tune's seeded TPE and pruner (Optuna's own default would be a
    MedianPruner), and a storage this worker can read the trials back from."""
    import optuna

    from tunelab.orchestration.tune import _pruner

    return {"sampler": optuna.samplers.TPESampler(seed=seed), "pruner": _pruner(pruner),
            "storage": optuna.storages.InMemoryStorage(), "study_name": "peer"}


def run_peer_search(config_path: Path, space_path: Path, trials: int, pruner: str, precision: str,
                    threads: int) -> dict[str, Any]:
    """Hugging Face's own HPO on the head config: model_init, hp_space, compute_objective, n_trials."""
    import shutil

    import optuna
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback

    from tunelab.orchestration.tune_space import load_space
    from tunelab.training.callbacks.early_stopping import metric_mode

    cc = _compare_cost()
    data = cc.peer_data(config_path, threads)
    config, n = data.config, len(data.index)
    metric = config.early_stopping.metric or "macro_f1"
    objective = BestSoFar(metric, metric_mode(metric, config.early_stopping.mode) == "max")

    class ResetObjective(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            objective.reset()

    out = tempfile.mkdtemp(prefix="tune-cost-peer-")
    trainer = Trainer(model_init=lambda trial: cc.peer_model(config, n, data.model_dir),
                      args=peer_arguments(config, precision, out), train_dataset=data.train,
                      eval_dataset=data.validation, data_collator=DataCollatorWithPadding(data.tokenizer),
                      compute_metrics=lambda p: cc.scores(p.predictions, p.label_ids, n), callbacks=[ResetObjective()])
    study = peer_study(config.train.seed, pruner)
    best = trainer.hyperparameter_search(hp_space=peer_hp_space(load_space(space_path)), compute_objective=objective,
                                         n_trials=trials, direction="maximize" if objective.maximize else "minimize",
                                         backend="optuna", gc_after_trial=True, **study)
    shutil.rmtree(out, ignore_errors=True)
    ran = optuna.load_study(study_name="peer", storage=study["storage"]).trials
    return {**trial_counts(t.state.name for t in ran), "best_validation": best.objective,
            "best_params": best.hyperparameters, "evaluations": len(objective.evaluations), "precision": precision,
            "trial_rows": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
                           for t in ran]}


# -- the report -------------------------------------------------------------------------------------
def ratios(legs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """tune / cold train per strategy (target: at most), peer / tunelab head tune (target: at least) with
    the best validation scores side by side."""
    ok = lambda name: name in legs and not legs[name].get("error") and legs[name].get("wall_s")  # noqa: E731
    out: dict[str, dict[str, Any]] = {}
    for strategy in ("head", "partial"):
        train, tune = f"{strategy} train", f"{strategy} tune"
        if ok(train) and ok(tune):
            ratio = round(legs[tune]["wall_s"] / legs[train]["wall_s"], 2)
            out[f"{tune} / {train}"] = {"ratio": ratio, "target": f"<= {TARGETS[strategy]}",
                                        "met": ratio <= TARGETS[strategy]}
    for name in [n for n in legs if n.startswith("peer ")]:
        if ok(name) and ok("head tune"):
            ratio = round(legs[name]["wall_s"] / legs["head tune"]["wall_s"], 2)
            ours, theirs = legs["head tune"].get("best_validation"), legs[name].get("best_validation")
            out[f"{name} / head tune"] = {"ratio": ratio, "target": f">= {TARGETS['peer']}",
                                          "met": ratio >= TARGETS["peer"],
                                          "best_validation": {"tunelab": ours, "peer": theirs},
                                          "score_met": ours is not None and theirs is not None and ours >= theirs}
    return out


def fmt(value: Any, spec: str) -> str:
    """`value` in `spec`, or a dash as wide when the leg did not produce it."""
    width = "".join(c for c in spec.split(".")[0] if c.isdigit())
    return format(value, spec) if isinstance(value, (int, float)) else "-".rjust(int(width or 0))


def print_report(legs: dict[str, dict[str, Any]], metric: str, notes: list[str]) -> None:
    """Per leg: wall time, trials, pruned, best validation; then the ratios against their targets."""
    print(f"{'leg':<14} {'wall s':>8} {'trials':>6} {'pruned':>6} {'best val ' + metric:>17}  note")
    for name, leg in legs.items():
        print(f"{name:<14} {fmt(leg.get('wall_s'), '8.1f')} {fmt(leg.get('trials'), '6d')} "
              f"{fmt(leg.get('pruned'), '6d')} {fmt(leg.get('best_validation'), '17.4f')}  "
              f"{(leg.get('error') or '')[:80]}")
    print(f"\n{'ratio':<30} {'x':>7}  {'target':<7} met")
    for name, r in ratios(legs).items():
        scores = r.get("best_validation")
        extra = (f"  best val tunelab {fmt(scores['tunelab'], '.4f')} vs peer {fmt(scores['peer'], '.4f')} "
                 f"(target >=: {'yes' if r['score_met'] else 'NO'})" if scores else "")
        print(f"{name:<30} {r['ratio']:6.2f}x  {r['target']:<7} {'yes' if r['met'] else 'NO'}{extra}")
    for note in notes:
        print(note)


# -- the driver -------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default=",".join(LEGS), help="comma-separated subset of " + ",".join(LEGS))
    parser.add_argument("--limit", type=int, default=None, help="use at most N BBC News articles (stratified)")
    parser.add_argument("--max-length", type=int, default=128, help="data.max_length (the demo's 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="train.batch_size (the demo's 16)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the head run and of every head trial")
    parser.add_argument("--partial-epochs", type=int, default=3, help="epochs of the partial run and trials")
    parser.add_argument("--head-trials", type=int, default=20, help="trials of the head searches (tunelab, peer)")
    parser.add_argument("--partial-trials", type=int, default=10, help="trials of the partial search")
    parser.add_argument("--pruner", choices=["none", "median"], default="none",
                        help="both searches' pruner (none: every trial runs every epoch, like for like)")
    parser.add_argument("--metric", default="macro_f1", help="the validation metric both searches maximise")
    parser.add_argument("--seed", type=int, default=0, help="train.seed and both TPE samplers' seed")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="tunelab's train.precision")
    _compare_cost().add_leg_options(parser)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the peer: the head CONFIG.yaml
    parser.add_argument("--space", default=None, help=argparse.SUPPRESS)   # the peer: SPACE.yaml
    args = parser.parse_args(argv)
    args.legs = [leg.strip() for leg in args.legs.split(",") if leg.strip()]
    unknown = sorted(set(args.legs) - set(LEGS))
    if unknown:
        parser.error(f"--legs: unknown {unknown}; choose from {', '.join(LEGS)}")
    return args


def prepare_inputs(args: argparse.Namespace, work: Path) -> dict[str, tuple[Path, Path, int]]:
    """Strategy -> (CONFIG.yaml, SPACE.yaml, trials), each space checked against its config (as tune does)."""
    from tunelab.orchestration.tune_space import check_space

    blocks = num_blocks("minilm")
    inputs = {}
    for strategy, trials in (("head", args.head_trials), ("partial", args.partial_trials)):
        raw = strategy_config(args, strategy, blocks)
        space = search_space(raw, blocks)
        check_space(raw, space, f"tune_cost {strategy}")
        inputs[strategy] = (*write_inputs(raw, space, work, strategy), trials)
    return inputs


def run_legs(args: argparse.Namespace, work: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The chosen legs in order: each strategy's cold run then its search, then the peer (slowest last)."""
    inputs = prepare_inputs(args, work)
    legs: dict[str, dict[str, Any]] = {}
    for strategy in ("head", "partial"):
        if strategy in args.legs:
            config, space, trials = inputs[strategy]
            legs[f"{strategy} train"] = run_train_leg(config, work, strategy, args.threads)
            legs[f"{strategy} tune"] = run_tune_leg(config, space, trials, args.pruner, work, strategy, args.threads)
    notes: list[str] = []
    if "peer" in args.legs:
        precisions, why = _compare_cost().peer_precisions(args.peer_precision)
        notes += [why] if why else []
        config, space, trials = inputs["head"]
        for precision in precisions:
            legs[f"peer {precision}"] = run_peer_leg(config, space, trials, args.pruner, precision, work, args.threads)
    return legs, notes


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_peer_search(Path(args.worker), Path(args.space), args.head_trials, args.pruner,
                                 args.peer_precision, args.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="tune-cost-"))
    work.mkdir(parents=True, exist_ok=bool(not args.work))
    legs, notes = run_legs(args, work)
    print_report(legs, args.metric, notes)
    settings = {k: getattr(args, k) for k in ("threads", "limit", "max_length", "batch_size", "epochs",
                                              "partial_epochs", "head_trials", "partial_trials", "pruner", "metric",
                                              "seed", "precision", "peer_precision")}
    result = {"benchmark": "tune_cost", **settings, "work": str(work), "ratios": ratios(legs), "targets": TARGETS,
              "notes": notes, "legs": legs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"runs and caches: {work}")
    return 1 if any(leg.get("error") for leg in legs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
