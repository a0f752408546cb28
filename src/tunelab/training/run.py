"""One run end to end: config -> data -> model -> plan -> fit -> test -> run directory.

Everything that can fail on user input (config, data, model directory) is checked before the output
directory is touched, and the run is written to a staging folder that replaces the target only on success.
"""

from __future__ import annotations

import csv
import io
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.artifacts.manifest import build_manifest, hash_records
from tunelab.artifacts.model_io import save_task_model
from tunelab.artifacts.rundir import RunDirectory
from tunelab.config.loading import config_to_yaml
from tunelab.config.schema import RunConfig, TrainConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.data.records import Record
from tunelab.data.sources import load_data
from tunelab.errors import RunInterrupted
from tunelab.models.cpu_dropout import use_fast_cpu_dropout
from tunelab.models.loading import count_parameters, hash_model_dir, resolve_model_dir
from tunelab.strategies.plan import apply_trainable
from tunelab.strategies.registry import compile_strategy
from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.registry import get_task
from tunelab.training.accel import compile_blocks, resolve_precision
from tunelab.training.cache import activation_cache_for
from tunelab.training.callbacks import MetricsLogCallback, ProgressCallback
from tunelab.training.checkpoint import CheckpointStore
from tunelab.training.loop_state import check_weights
from tunelab.training.resume import check_resumable, checkpoint_store, run_identity, select_checkpoint
from tunelab.training.signals import graceful_stop
from tunelab.training.step import autocast_for
from tunelab.training.trainer import Trainer

__all__ = ["run_training", "RunSummary", "seed_everything", "select_device", "encode_split", "predictions_table",
           "generate_split", "generate_test"]


@dataclass
class RunSummary:
    run_dir: Path
    test_metrics: dict[str, Any]
    trainable_params: int
    total_params: int
    wall_time_s: float
    train_time_s: float
    peak_rss_mb: float
    epochs_run: int
    stopped_early: str


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    threads = config.num_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)  # one intra-op pool sized to the cores we may use: no oversubscription
    return torch.device("cpu")


def _resolve_precision(config: RunConfig, device: torch.device, console: Console) -> RunConfig:
    """bf16 only where the device computes it natively; the saved config says what really ran."""
    precision, note = resolve_precision(device, config.train.precision)
    if note:
        console.print(note)
    if precision == config.train.precision:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update={"precision": precision})})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def encode_split(records: list[Record], tokenizer: Any, max_length: int, task: Task, label_names: list[str],
                 with_targets: bool = True, train: bool = False) -> EncodedSplit:
    """The task encodes its own examples (token ids, per-token targets, pixels, ...); `train` turns on the
    task's training-time augmentation, if it has one."""
    return task.encode(records, tokenizer, max_length, label_names, with_targets=with_targets, train=train)


def predictions_table(records: list[Record], predictions: Predictions, label_names: list[str], task: Task) -> str:
    """CSV: where, text, label (if known), prediction, and one probability column per class (if the task
    scores classes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with_scores = predictions.scores is not None and task.name != "regression"
    score_cols = [f"prob_{n}" for n in label_names] if with_scores else []
    writer.writerow(["where", "text", "label", "prediction", *score_cols])
    scores = predictions.scores if with_scores else [()] * len(records)
    for record, value, row in zip(records, predictions.values, scores):
        probs = [f"{s:.6f}" for s in row] if score_cols else []
        writer.writerow([record.where, record.text, task.show(record.label), task.show(value), *probs])
    return buffer.getvalue()


def _targets_kind(task: Task, label_names: list[str]) -> str:
    if label_names:
        return f"{len(label_names)} classes"
    return "free-text responses" if getattr(task, "generative", False) else "regression targets"


def _generates(task: Task, split: EncodedSplit) -> bool:
    return bool(getattr(task, "generative", False)) and len(split) > 0


def generate_split(task: Any, model: Any, split: EncodedSplit, tokenizer: Any, config: RunConfig, device: torch.device,
                   max_new_tokens: Optional[int] = None) -> tuple[list[str], list[bool]]:
    """Greedy replies to the split's prompts and whether each stopped on its own (generative tasks); the run's
    batch size and precision, so a served run generates exactly as its test split did."""
    generation = config.generation
    if max_new_tokens is not None:
        generation = generation.model_copy(update={"max_new_tokens": max_new_tokens})
    return task.generate(model, split, tokenizer, generation, device=device,
                         batch_size=config.train.eval_batch_size or 2 * config.train.batch_size,
                         autocast=autocast_for(device, config.train.precision))


def generate_test(task: Any, model: Any, split: EncodedSplit, tokenizer: Any, config: RunConfig,
                  device: torch.device) -> tuple[list[str], dict[str, float]]:
    """Greedy replies to the split's prompts and their scores against its responses."""
    texts, stopped = generate_split(task, model, split, tokenizer, config, device)
    return texts, task.generation_metrics(split.records, texts, stopped)


def run_training(config: RunConfig, *, out: Optional[str] = None, overwrite: bool = False,
                 console: Optional[Console] = None, resume: bool = False, trust_pickle: bool = False) -> RunSummary:
    """Train as `config` says into `out` (default: config.output). With `resume`, continue the unfinished run
    there from its latest valid checkpoint (see training/resume.py)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    run_dir = RunDirectory(Path(out or config.output), overwrite=overwrite)
    if resume:
        check_resumable(run_dir)
    run_dir.check_target(resume)
    task = get_task(config.task)
    seed_everything(config.train.seed)
    device = select_device(config.train)
    config = _resolve_precision(config, device, console)

    data = load_data(config.data, task, config.train.seed)
    splits, label_names = data.splits, data.label_names
    model_dir = resolve_model_dir(config.model.name, trust_pickle)
    data_hashes = {name: hash_records(getattr(splits, name)) for name in ("train", "validation", "test")}
    identity = run_identity(config, data_hashes, hash_model_dir(model_dir))
    store = checkpoint_store(run_dir, config)
    checkpoint = select_checkpoint(store, identity, lambda m: console.print(f"[yellow]warning:[/] {escape(m)}")) if resume else None
    tokenizer = task.load_preprocessor(model_dir, config)
    seed_everything(config.train.seed)
    model = task.build_model(config.model, config.head, label_names, model_dir)
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    apply_trainable(model, plan.trainable_at(0))
    if checkpoint is not None:
        check_weights(checkpoint, model, plan)
    trainable, total = count_parameters(model)
    ever = sum(p.numel() for n, p in model.named_parameters() if n in plan.ever_trainable)
    later = f", {ever:,} once all blocks unfreeze" if ever != trainable else ""
    console.print(f"[bold]{config.strategy.name}[/]: {trainable:,} of {total:,} parameters trainable "
                  f"({100 * trainable / total:.2f}%){later}; {model.layer_stack.num_blocks} blocks; device {device.type}")
    console.print(f"data: {len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test, "
                  f"{_targets_kind(task, label_names)}")

    encoded = {name: encode_split(getattr(splits, name), tokenizer, config.data.max_length, task, label_names,
                                  train=name == "train") for name in ("train", "validation", "test")}
    staging = run_dir.open(resume)
    try:
        if checkpoint is None:
            atomic_write_text(staging / "config.yaml", config_to_yaml(config))
            atomic_write_json(staging / "labels.json", {"task": config.task, "labels": label_names})
        else:
            store.rewind_sidecars(checkpoint)
            position = checkpoint.state["position"]
            console.print(f"resuming from {checkpoint.path} (epoch {position['epoch'] + 1}, batch {position['batch']}, "
                          f"step {position['step']})")
        loss_fn = task.loss_fn(config.loss, encoded["train"], label_names)
        callbacks = [MetricsLogCallback(staging / "metrics.jsonl"), ProgressCallback(console)]
        cache = activation_cache_for(config.train, tokenizer, config.data.max_length) if task.supports_cache else None
        if config.train.cache == "auto" and not task.supports_cache:
            console.print(f"activation cache: not offered for task {task.name}; the frozen blocks are recomputed")
        if device.type == "cpu":  # after the strategy: its own dropouts (LoRA's) are swapped too
            use_fast_cpu_dropout(model)
        if config.train.compile:
            console.print(f"torch.compile: {compile_blocks(model)} blocks")
        trainer = Trainer(config, task, label_names, loss_fn, device, tokenizer.pad_token_id or 0, callbacks,
                          activation_cache=cache)
        base_generation: dict[str, Any] = {}
        if _generates(task, encoded["test"]) and config.generation.compare_base and checkpoint is None:
            console.print(f"generating {len(encoded['test'])} test replies with the model before training ...")
            _, base_generation = generate_test(task, model.to(device), encoded["test"], tokenizer, config, device)
        with graceful_stop(lambda r: console.print(f"{r.name} received: finishing the current step, then writing "
                                                   "a checkpoint (press Ctrl-C again to stop at once)")) as stop:
            fit = trainer.fit(model, plan, encoded["train"], encoded["validation"], checkpoints=store,
                              resume=checkpoint, stop=stop, identity=identity)
        if fit.stopped_early:
            console.print(fit.stopped_early)
        test_metrics: dict[str, Any] = {}
        if len(encoded["test"]):
            result = trainer.evaluate(model, encoded["test"])
            test_metrics = result.metrics
            if _generates(task, encoded["test"]):
                console.print(f"generating {len(encoded['test'])} test replies with the trained model ...")
                texts, generated = generate_test(task, model, encoded["test"], tokenizer, config, device)
                test_metrics.update(generated)
                test_metrics.update({f"base_{k}": v for k, v in base_generation.items()})
                result.predictions = Predictions(values=texts, scores=None, raw=texts)
            atomic_write_json(staging / "test_metrics.json", test_metrics)
            atomic_write_text(staging / "predictions.csv",
                              predictions_table(splits.test, result.predictions, label_names, task))
        if cache is not None:
            for line in [*cache.stats.notes, cache.summary()]:
                console.print(line)
        model.cpu()
        save_task_model(model, tokenizer, staging / "model", config)
        summary = RunSummary(run_dir=run_dir.target, test_metrics=test_metrics, trainable_params=trainable,
                             total_params=total, wall_time_s=time.perf_counter() - started, train_time_s=fit.wall_time_s,
                             peak_rss_mb=peak_rss_mb(), epochs_run=fit.epochs_run, stopped_early=fit.stopped_early)
        manifest = build_manifest(
            seed=config.train.seed, data_hashes=data_hashes,
            base_model=str(model_dir), base_model_hash=identity["base_model_sha256"],
            extra={"strategy": config.strategy.name, "trainable_params": trainable, "total_params": total,
                   "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch, "best_metric": fit.best_metric,
                   "train_time_s": round(fit.wall_time_s, 2), "peak_rss_mb": round(summary.peak_rss_mb, 1),
                   "history": fit.history, "device": device.type, "precision": config.train.precision,
                   "resumed_from": checkpoint.name if checkpoint is not None else None,
                   "activation_cache": None if cache is None else cache.stats.as_dict()},
        )
        atomic_write_json(staging / "manifest.json", manifest)
    except BaseException as err:
        _keep_or_abandon(run_dir, store, err, console)
        raise
    run_dir.commit()
    return summary


def _keep_or_abandon(run_dir: RunDirectory, store: CheckpointStore, err: BaseException, console: Console) -> None:
    """A failed run with checkpoints keeps its staging folder so it can be resumed; one without is removed."""
    if not store.names():
        run_dir.abandon()
    elif not isinstance(err, RunInterrupted):
        console.print(f"the unfinished run's checkpoints are kept in {store.root}; continue it with --resume "
                      "(or start over with --overwrite)")
