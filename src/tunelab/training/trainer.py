"""The single training loop: every strategy and task runs through `Trainer.fit`, which executes a Plan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch
from torch import nn

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import Batch, EncodedSplit, iterate_batches
from tunelab.strategies.plan import Plan, apply_trainable
from tunelab.tasks.base import Predictions, Task
from tunelab.training.cache import (ActivationCache, CachedPrefixStore, CacheUnsupported, eval_frozen_prefix,
                                    prefix_schedule)
from tunelab.training.callbacks import (Callback, Control, EarlyStoppingCallback, TrainState, dispatch, metric_mode)
from tunelab.training.schedules import build_scheduler
from tunelab.training.step import autocast_for, optimizer_step, predict_logits, train_step

__all__ = ["Trainer", "FitResult", "EvalResult"]


@dataclass
class EvalResult:
    loss: float
    metrics: dict[str, Any]
    predictions: Predictions


@dataclass
class FitResult:
    epochs_run: int
    steps: int
    best_epoch: Optional[int]
    best_metric: Optional[float]
    stopped_early: str
    wall_time_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(self, config: RunConfig, task: Task, label_names: list[str], loss_fn: nn.Module,
                 device: torch.device, pad_id: int, callbacks: Optional[list[Callback]] = None,
                 activation_cache: Optional[ActivationCache] = None) -> None:
        self.config, self.task, self.label_names = config, task, label_names
        self.loss_fn, self.device, self.pad_id = loss_fn.to(device), device, pad_id
        self.callbacks = list(callbacks or [])
        self.activation_cache = activation_cache
        self.frozen_k: Optional[int] = None  # embeddings + blocks [0, k) frozen in the current epoch
        self._stores: dict[tuple[int, int], CachedPrefixStore] = {}

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: EncodedSplit) -> EvalResult:
        batch_size = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        batches = self._batches(model, split, batch_size, shuffle=False)
        logits = predict_logits(model, batches, len(split), self.device, self.config.train.precision)
        predictions = self.task.predict(logits, self.label_names)
        loss = float(self.loss_fn(logits.to(self.device), split.targets.to(self.device))) if split.targets is not None else float("nan")
        metrics = self.task.metrics(split.targets, predictions, self.label_names) if split.targets is not None else {}
        return EvalResult(loss=loss, metrics={"loss": loss, **metrics}, predictions=predictions)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, model: nn.Module, plan: Plan, train: EncodedSplit, validation: Optional[EncodedSplit]) -> FitResult:
        cfg = self.config.train
        model.to(self.device)
        apply_trainable(model, plan.trainable_at(0))
        optimizer = torch.optim.AdamW(plan.optimizer_groups(model), lr=self.config.optim.lr,
                                      betas=self.config.optim.betas, eps=self.config.optim.eps)
        micro_batches = -(-len(train) // cfg.batch_size)
        steps_per_epoch = -(-micro_batches // cfg.grad_accum_steps)
        total_steps = steps_per_epoch * cfg.epochs
        scheduler = build_scheduler(optimizer, self.config.schedule, total_steps)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        autocast = autocast_for(self.device, cfg.precision)

        schedule = prefix_schedule(model, plan, cfg.epochs)
        self._start_cache(model, schedule, [train, validation])
        best_state: dict[str, torch.Tensor] = {}
        ever = sorted(plan.ever_trainable)

        def remember_best(epoch: int, value: float) -> None:
            named = dict(model.named_parameters())
            best_state.clear()
            best_state.update({n: named[n].detach().clone() for n in ever})

        stopper = EarlyStoppingCallback(self.config.early_stopping.metric,
                                        metric_mode(self.config.early_stopping.metric, self.config.early_stopping.mode),
                                        self.config.early_stopping.patience, remember_best)
        callbacks = [stopper, *self.callbacks] if validation is not None and len(validation) else list(self.callbacks)
        control = Control()
        start = time.perf_counter()
        step, seen, loss_value, history = 0, 0, 0.0, []

        def state(epoch: int, metrics: Optional[dict] = None, events: tuple[str, ...] = ()) -> TrainState:
            return TrainState(epoch=epoch, epochs=cfg.epochs, step=step, total_steps=total_steps, examples_seen=seen,
                              loss=loss_value, lr=max(g["lr"] for g in optimizer.param_groups),
                              elapsed=time.perf_counter() - start, metrics=metrics or {}, events=events)

        dispatch(callbacks, "on_fit_start", state(0), control)
        epoch = 0
        for epoch in range(cfg.epochs):
            apply_trainable(model, plan.trainable_at(epoch))
            applied = tuple(e.description for e in plan.events if e.epoch == epoch)
            dispatch(callbacks, "on_epoch_start", state(epoch, events=applied), control)
            self._train_mode(model, schedule[epoch])
            pending, accumulated = 0, []
            for batch in self._batches(model, train, cfg.batch_size, shuffle=True, epoch=epoch):
                batch = batch.to(self.device)
                # scale by the micro-batch's share so accumulated gradients equal one big batch's mean
                accumulated.append(train_step(model, batch, self.loss_fn, autocast=autocast,
                                              scale=len(batch) / (cfg.batch_size * cfg.grad_accum_steps)))
                pending += 1
                seen += len(batch)
                if pending == cfg.grad_accum_steps:
                    optimizer_step(optimizer, scheduler, params, cfg.max_grad_norm)
                    step, loss_value, pending, accumulated = step + 1, sum(accumulated) / len(accumulated), 0, []
                    dispatch(callbacks, "on_step_end", state(epoch), control)
            if pending:
                optimizer_step(optimizer, scheduler, params, cfg.max_grad_norm)
                step, loss_value = step + 1, sum(accumulated) / len(accumulated)
                dispatch(callbacks, "on_step_end", state(epoch), control)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": loss_value, **({"events": list(applied)} if applied else {})}
            if validation is not None and len(validation):
                result = self.evaluate(model, validation)
                record.update({k: v for k, v in result.metrics.items() if isinstance(v, float)})
                dispatch(callbacks, "on_evaluate", state(epoch, result.metrics), control)
            history.append(record)
            dispatch(callbacks, "on_epoch_end", state(epoch), control)
            if control.stop_training:
                break
        dispatch(callbacks, "on_fit_end", state(epoch), control)

        if best_state and self.config.early_stopping.restore_best:
            with torch.no_grad():
                named = dict(model.named_parameters())
                for name, value in best_state.items():
                    named[name].copy_(value)
        return FitResult(epochs_run=epoch + 1, steps=step, best_epoch=stopper.best_epoch, best_metric=stopper.best,
                         stopped_early=control.reason, wall_time_s=time.perf_counter() - start, history=history)

    # -- frozen prefix and activation cache -------------------------------------------------------
    def _train_mode(self, model: nn.Module, k: Optional[int]) -> None:
        """Train mode, except the frozen prefix (embeddings + blocks [0, k)), which runs in eval mode in
        both the cached and the recomputing path, so the two give the same model."""
        model.train()
        eval_frozen_prefix(model, k)
        self.frozen_k = k

    def _start_cache(self, model: nn.Module, schedule: list[Optional[int]], splits: list[Optional[EncodedSplit]]) -> None:
        """Build (or find) the entries every epoch of this fit will read, before the clock of epoch 0."""
        self._stores.clear()
        self.frozen_k = None
        starts = sorted({k for k in schedule if k})
        if self.activation_cache is None or not starts:
            return
        for split in splits:
            if split is not None and len(split):
                self._ensure_stores(model, split, starts)

    def _ensure_stores(self, model: nn.Module, split: EncodedSplit, starts: list[int]) -> None:
        cache = self.activation_cache
        if cache is None:
            return
        try:
            stores = cache.ensure(model, split, starts, device=self.device, pad_id=self.pad_id,
                                  batch_size=self.config.train.eval_batch_size or 2 * self.config.train.batch_size,
                                  autocast=autocast_for(self.device, self.config.train.precision))
        except CacheUnsupported as err:
            cache.stats.notes.append(f"activation cache off, recomputing the frozen blocks: {err}")
            self.activation_cache = None
            return
        self._stores.update({(id(split), k): store for k, store in stores.items()})

    def _batches(self, model: nn.Module, split: EncodedSplit, batch_size: int, *, shuffle: bool,
                 epoch: int = 0) -> Iterator[Batch]:
        """Batches of `split`; while a prefix is frozen and cached, each carries its cached hidden states."""
        k = self.frozen_k
        if self.activation_cache is not None and k and (id(split), k) not in self._stores:
            self._ensure_stores(model, split, [k])
        store = self._stores.get((id(split), k)) if k and self.activation_cache is not None else None
        for batch in iterate_batches(split, batch_size, pad_id=self.pad_id, shuffle=shuffle,
                                     seed=self.config.train.seed, epoch=epoch):
            if store is not None:
                batch.prefix_hidden = store.read(batch.indices, batch.input_ids.shape[1])  # (B, T, H)
                batch.start_block = k
                self.activation_cache.stats.served_batches += 1
            yield batch
