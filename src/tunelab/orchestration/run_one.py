"""One strategy on a prepared run: model and plan, fit under signals, test evaluation, run directory.

Everything that can fail on user input (config, data, model directory) was checked by `prepare` before the
output directory is touched, and the run is written to a staging folder that replaces the target only on
success (a failed run with checkpoints keeps it, for `--resume`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from rich.console import Console
from rich.markup import escape

from tunelab.artifacts.model_card import write_model_card
from tunelab.artifacts.model_io import save_task_model
from tunelab.artifacts.rundir import RunDirectory
from tunelab.config.schema import RunConfig
from tunelab.errors import RunInterrupted
from tunelab.inference.generation import generate_test
from tunelab.inference.predict import predict_split
from tunelab.models.cpu_dropout import use_fast_cpu_dropout
from tunelab.models.loading import count_parameters, parameter_count
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.distilling import check_distillation, distillation_report, prepare_distillation
from tunelab.orchestration.forgetting import measure_forgetting, start_meter
from tunelab.orchestration.guarding import guard_report, prepare_guard
from tunelab.orchestration.multitask import (MultiPrepared, multitask_manifest, write_multitask_start,
                                             write_multitask_test)
from tunelab.orchestration.multitask_training import MultiTaskTrainer
from tunelab.orchestration.outputs import (RunSummary, peak_rss_mb, write_manifest, write_report_files, write_run_start,
                                           write_test_outputs)
from tunelab.orchestration.preference import attach_reference
from tunelab.orchestration.prepare import Prepared
from tunelab.orchestration.report_inputs import parameters_by_block
from tunelab.orchestration.thresholds import check_thresholds, tuned_predictions
from tunelab.strategies.plan import Plan, apply_trainable
from tunelab.strategies.peft.lora import check_quantize_device
from tunelab.strategies.registry import compile_strategy
from tunelab.tasks.base import Predictions
from tunelab.training.accel import compile_blocks
from tunelab.training.cache import ActivationCache, activation_cache_for
from tunelab.training.callbacks import Callback, MetricsLogCallback, ProgressCallback
from tunelab.training.callbacks.progress import print_phrases
from tunelab.training.callbacks.tracking import RunTracking, abort_tracking, finish_tracking, open_tracking
from tunelab.training.checkpoint import Checkpoint, CheckpointStore
from tunelab.training.device import seed_everything
from tunelab.training.loop_state import check_weights
from tunelab.training.resume import check_resumable, checkpoint_store, run_identity, select_checkpoint
from tunelab.training.signals import graceful_stop
from tunelab.training.trainer import Trainer

__all__ = ["run_one", "check_run_dir", "AUTO_CACHE"]

AUTO_CACHE = "auto"  # run_one's default: the activation cache the config asks for


@dataclass
class _Session:
    """What one run_one call builds and its steps share."""

    prepared: Prepared
    config: RunConfig
    console: Console
    store: CheckpointStore
    checkpoint: Optional[Checkpoint]
    identity: dict[str, Any]
    run_dir: RunDirectory
    counts: tuple[int, int] = (0, 0)   # (trainable, total) parameters at the first step
    callbacks: tuple[Callback, ...] = ()  # the caller's, beside the log and the progress bar
    test: bool = True                  # score the test split (a search's trials do not: it never selects)
    keep_model: Callable[[], bool] = lambda: True  # asked after the fit: False writes no model/ (a pruned trial)
    tracking: Optional[RunTracking] = None   # TensorBoard / MLflow, as config.tracking asks
    meter: Any = None                  # the forgetting meter's base copy and reference (orchestration/forgetting.py)
    guard: Optional[dict[str, Any]] = None  # the forgetting guard's report (orchestration/guarding.py)
    distill: Optional[dict[str, Any]] = None  # distillation's report (orchestration/distilling.py)
    preference: Optional[dict[str, Any]] = None  # the reference log-probs' report (orchestration/preference.py)


def run_one(prepared: Prepared, config: Optional[RunConfig] = None, *, run_dir: RunDirectory, resume: bool = False,
            console: Optional[Console] = None, cache: Union[ActivationCache, None, str] = AUTO_CACHE,
            started: Optional[float] = None, callbacks: Sequence[Callback] = (), test: bool = True,
            keep_model: Optional[Callable[[], bool]] = None) -> RunSummary:
    """Train `config` (default: the prepared config; it may change strategy, optimisation, schedule and epochs)
    on `prepared` into `run_dir`. `cache`: a shared ActivationCache, None for none, or AUTO_CACHE; `started`:
    the clock reading the summary's wall time counts from (default: now); `callbacks`: the caller's (a
    search's pruning); `test=False` (a search's trial) leaves the test split unscored and writes no report.html:
    the search selects on validation, and `score_test` scores and reports the one trial it keeps;
    `keep_model`, asked once the fit ends: False leaves `model/` unwritten (a pruned trial is never selected,
    and a head trial's 87 MiB cost a third of its time)."""
    started = time.perf_counter() if started is None else started
    check_run_dir(run_dir, resume)
    prepared = prepared.for_config(config)
    config = prepared.config
    console = console or Console(stderr=True)
    session = _open_session(prepared, config, run_dir, resume, console)
    session.callbacks, session.test = tuple(callbacks), test
    if keep_model is not None:
        session.keep_model = keep_model
    seed_everything(config.train.seed)
    model, plan = _build(session)
    if not prepared.dist.is_main:
        return _run_other_rank(session, model, plan, cache, started)
    staging = run_dir.open(resume)
    try:
        summary = _train_and_write(session, model, plan, staging, cache, started)
    except BaseException as err:
        abort_tracking(session.tracking, err)
        _keep_or_abandon(run_dir, session.store, err, console)
        raise
    run_dir.commit()
    finish_tracking(session.tracking, run_dir.target, summary.test_metrics)  # test metrics, artifacts
    prepared.dist.barrier()  # the others return once the run directory is in place
    return summary


def _run_other_rank(session: _Session, model: TaskModel, plan: Plan, cache: Any, started: float) -> RunSummary:
    """A rank other than 0 under torchrun: the same fit and evaluation (every collective needs every rank),
    writing into a scratch folder that is removed after; rank 0 alone writes the run directory."""
    scratch = Path(tempfile.mkdtemp(prefix=f"tunelab-rank{session.prepared.dist.rank}-"))
    try:
        summary = _train_and_write(session, model, plan, scratch, cache, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    session.prepared.dist.barrier()
    return summary


def check_run_dir(run_dir: RunDirectory, resume: bool) -> None:
    """The output folder can take this run (or, resuming, holds an unfinished one): checked before anything is
    read or written, by `train` before `prepare` and by every `run_one`."""
    if resume:
        check_resumable(run_dir)
    run_dir.check_target(resume)


def _open_session(prepared: Prepared, config: RunConfig, run_dir: RunDirectory, resume: bool,
                  console: Console) -> _Session:
    identity = run_identity(config, prepared.data_hashes, prepared.base_model_hash)
    store = checkpoint_store(run_dir, config)
    warn = lambda m: console.print(f"[yellow]warning:[/] {escape(m)}")  # noqa: E731
    checkpoint = select_checkpoint(store, identity, warn) if resume else None
    return _Session(prepared, config, console, store, checkpoint, identity, run_dir)


def _build(session: _Session) -> tuple[TaskModel, Plan]:
    """The task model with the strategy applied, and what it trains; one summary line for the user."""
    prepared, config = session.prepared, session.config
    check_quantize_device(config.strategy, prepared.device.type)
    model = prepared.build_model(config)
    for note in model.notes:  # what building it did (a head created where the checkpoint had none)
        session.console.print(escape(note))
    session.meter = start_meter(prepared, config, model) if session.test else None
    check_thresholds(prepared, config)
    check_distillation(config, prepared.label_names)
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    apply_trainable(model, plan.trainable_at(0))
    if session.checkpoint is not None:
        check_weights(session.checkpoint, model, plan)
    trainable, total = session.counts = count_parameters(model)
    ever = sum(parameter_count(p) for n, p in model.named_parameters() if n in plan.ever_trainable)
    later = [f"{ever:,} once all blocks unfreeze"] if ever != trainable else []
    splits, dist = prepared.splits, prepared.dist
    world = [f"{dist.world_size} processes ({'FSDP' if dist.sharded else 'DDP'})"] if dist.active else []
    print_phrases(session.console, [f"[bold]{config.strategy.name}[/]: {trainable:,} of {total:,} parameters trainable "
                                    f"({100 * trainable / total:.2f}%)", *later, f"{model.layer_stack.num_blocks} blocks",
                                    f"device {prepared.device.type}", *world])
    print_phrases(session.console, [f"data: {len(splits.train)} train / {len(splits.validation)} validation / "
                                    f"{len(splits.test)} test", _targets_kind(prepared)], sep=", ")
    return model, plan


def _targets_kind(prepared: Prepared) -> str:
    if isinstance(prepared, MultiPrepared):
        return prepared.task.describe()  # type: ignore[attr-defined]
    if prepared.label_names:
        return f"{len(prepared.label_names)} classes"
    if prepared.task.label_kind == "none":
        return f"unlabelled text, {len(prepared.encoded['train'])} training examples"
    if prepared.task.label_kind == "pair":
        return "preference pairs"
    return "free-text responses" if prepared.task.generative else "regression targets"


def _train_and_write(session: _Session, model: TaskModel, plan: Plan, staging: Path, cache: Any,
                     started: float) -> RunSummary:
    prepared, config, console = session.prepared, session.config, session.console
    _start_outputs(session, staging)
    parameters = parameters_by_block(model)  # at the first step, before compile renames anything
    trainer, cache = _trainer(session, model, staging, cache)
    session.preference = attach_reference(prepared, config, model, console)  # the targets of a preference run
    base_texts, base_scores = _before_training(session, model, trainer)
    session.guard = prepare_guard(prepared, config, model, plan, trainer.loss_fn, staging, session.checkpoint is not None)
    session.distill = prepare_distillation(prepared, config, plan, console)
    with graceful_stop(lambda r: print_phrases(console, [f"{r.name} received:", "finishing the current step,",
                                                         "then writing a checkpoint", "(press Ctrl-C again to stop at once)"],
                                               sep=" ")) as stop:
        fit = trainer.fit(model, plan, prepared.encoded["train"], prepared.encoded["validation"],
                          checkpoints=session.store, resume=session.checkpoint, stop=stop, identity=session.identity)
    if fit.stopped_early:
        console.print(fit.stopped_early)
    session.guard, session.distill = guard_report(session.guard, plan), distillation_report(session.distill, plan)
    test_metrics = _test(session, trainer, model, staging, base_scores)
    if cache is not None:
        for line in cache.stats.notes:
            console.print(line)
        if cache.stats.built_entries or cache.stats.reused_entries:  # a run with nothing frozen has nothing to cache
            print_phrases(console, cache.summary_phrases(), sep=" ")
    model.cpu()
    kept = session.keep_model() and prepared.dist.is_main
    if kept:
        save_task_model(model, prepared.tokenizer, staging / "model", config)
    trainable, total = session.counts
    summary = RunSummary(run_dir=session.run_dir.target, test_metrics=test_metrics, trainable_params=trainable,
                         total_params=total, wall_time_s=time.perf_counter() - started, train_time_s=fit.wall_time_s,
                         peak_rss_mb=peak_rss_mb(), epochs_run=fit.epochs_run, stopped_early=fit.stopped_early)
    write_manifest(staging, prepared, config, summary, fit,
                   session.checkpoint.name if session.checkpoint is not None else None, cache, guard=session.guard,
                   distill=session.distill, preference=session.preference,
                   more=multitask_manifest(prepared))
    _write_card_and_report(session, staging, parameters, base_texts, kept)
    return summary


def _write_card_and_report(session: _Session, staging: Path, parameters: dict[str, Any], base_texts: list[str],
                           kept: bool) -> None:
    """The model card (of a kept model) and report.html with its profile; neither for a multi-task run yet."""
    prepared = session.prepared
    if isinstance(prepared, MultiPrepared):
        session.console.print("report.html and the model card are not written for a multi-task run yet")
        return
    if kept:
        write_model_card(staging, {k: len(getattr(prepared.splits, k)) for k in ("train", "validation", "test")})
    write_report_files(staging, prepared, parameters, base_texts, session.console,
                       html=session.test and prepared.dist.is_main and session.config.report)


def _start_outputs(session: _Session, staging: Path) -> None:
    """A fresh run writes its config and labels first; a resumed one rewinds the files its checkpoint covers."""
    if session.checkpoint is None and isinstance(session.prepared, MultiPrepared):
        write_multitask_start(staging, session.config, session.prepared.task)  # type: ignore[arg-type]
        return
    if session.checkpoint is None:
        write_run_start(staging, session.config, session.prepared.label_names)
        return
    if session.prepared.dist.is_main:  # the sidecars are rank 0's run directory's
        session.store.rewind_sidecars(session.checkpoint)
    position = session.checkpoint.state["position"]
    print_phrases(session.console, ["resuming from", str(session.checkpoint.path), f"(epoch {position['epoch'] + 1},",
                                    f"batch {position['batch']},", f"step {position['step']})"], sep=" ")


def _trainer(session: _Session, model: TaskModel, staging: Path, cache: Any) -> tuple[Trainer, Optional[ActivationCache]]:
    """The trainer with the run's callbacks and activation cache, after the CPU and compile settings."""
    prepared, config, console = session.prepared, session.config, session.console
    task = prepared.task
    if cache is AUTO_CACHE:
        cache = activation_cache_for(config.train, prepared.tokenizer, prepared.max_length) if task.supports_cache else None
        if config.train.cache == "auto" and not task.supports_cache:
            console.print(f"activation cache: not offered for task {task.name}; the frozen blocks are recomputed")
    if cache is not None and prepared.encoded["train"].augment is not None:  # any train-time augmentation
        cache = None
        changes, undo = (("images", "data.augment.enabled: false") if task.takes_images else
                         ("tokens", "data.augment.token_dropout, swap and span_mask at 0"))
        console.print(f"activation cache: off, because data.augment changes the training {changes} every epoch, so "
                      "the frozen blocks' output of an example is not the same twice; the frozen blocks are recomputed "
                      f"({undo} caches them)")
    if prepared.device.type == "cpu":  # after the strategy: its own dropouts (LoRA's) are swapped too
        use_fast_cpu_dropout(model)
    if config.train.compile:
        console.print(f"torch.compile: {compile_blocks(model)} blocks")
    loss_fn = task.loss_fn(config.loss, prepared.encoded["train"], prepared.label_names)
    session.tracking = open_tracking(config, staging, session.run_dir.target)
    callbacks = [MetricsLogCallback(staging / "metrics.jsonl"), ProgressCallback(console), *session.tracking.callbacks,
                 *session.callbacks]
    trainer_type = MultiTaskTrainer if isinstance(prepared, MultiPrepared) else Trainer  # a head per task
    trainer = trainer_type(config, task, prepared.label_names, loss_fn, prepared.device,
                      prepared.tokenizer.pad_token_id or 0, callbacks, activation_cache=cache, dist=prepared.dist)
    return trainer, cache


def _generates(session: _Session) -> bool:
    return session.prepared.task.generative and len(session.prepared.encoded["test"]) > 0


def _before_training(session: _Session, model: TaskModel, trainer: Trainer) -> tuple[list[str], dict[str, Any]]:
    """The test split scored with the model before training, so the run shows what training changed: a generative
    task's replies (for the report) and their scores; a continued pre-training task's loss and perplexity (the
    same masks and chunks as after; a resumed run too: its checkpoint is loaded by the fit, after this). A resumed
    generative run does not generate again."""
    prepared, config = session.prepared, session.config
    test = prepared.encoded["test"]
    if prepared.task.saves_backbone and session.test and len(test):
        predictions, _ = predict_split(model.to(prepared.device), test, prepared.task, prepared.label_names,
                                       batch_size=config.train.evaluation_batch_size, pad_id=trainer.pad_id,
                                       device=prepared.device, precision=config.train.precision)
        return [], prepared.task.metrics(test, predictions, prepared.label_names)
    if session.checkpoint is not None or not (_generates(session) and config.generation.compare_base):
        return [], {}
    session.console.print(f"generating {len(test)} test replies with the model before training ...")
    texts, scores = generate_test(prepared.task, model.to(prepared.device), test, prepared.tokenizer, config,
                                  prepared.device)
    return texts, scores


def _test(session: _Session, trainer: Trainer, model: TaskModel, staging: Path,
          base_scores: dict[str, Any]) -> dict[str, Any]:
    """Test metrics and predictions (with generation scores for generative tasks), written to the run."""
    prepared = session.prepared
    test = prepared.encoded["test"]
    if not len(test) or not session.test:
        return {}
    result = trainer.evaluate(model, test)
    if isinstance(prepared, MultiPrepared):  # each task's test split: a section and a predictions file per task
        return write_multitask_test(staging, prepared, result)
    metrics, predictions = result.metrics, result.predictions
    if session.config.thresholds.tune:  # decided at the validation split's thresholds, as predict will
        predictions, chosen = tuned_predictions(trainer, model, prepared, staging, predictions)
        metrics = {"loss": result.loss, **prepared.task.metrics(test, predictions, prepared.label_names),
                   "thresholds": chosen}
    if _generates(session):
        session.console.print(f"generating {len(test)} test replies with the trained model ...")
        texts, generated = generate_test(prepared.task, model, test, prepared.tokenizer, session.config,
                                         prepared.device)
        metrics.update(generated)
        predictions = Predictions(values=texts, scores=None, raw=texts)
    metrics.update({f"base_{k}": v for k, v in base_scores.items()})
    if session.meter is not None:
        metrics["forgetting"] = {**measure_forgetting(session.meter, prepared, session.config, model), "guard": session.guard}
    write_test_outputs(staging, prepared, metrics, predictions)
    return metrics


def _keep_or_abandon(run_dir: RunDirectory, store: CheckpointStore, err: BaseException, console: Console) -> None:
    """A failed run with checkpoints keeps its staging folder so it can be resumed; one without is removed."""
    if not store.names():
        run_dir.abandon()
    elif not isinstance(err, RunInterrupted):
        print_phrases(console, ["the unfinished run's checkpoints are kept in", f"{store.root};",
                                "continue it with --resume", "(or start over with --overwrite)"], sep=" ")
