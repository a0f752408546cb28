"""The single training loop: every strategy and task runs through `Trainer.fit`, which executes a Plan."""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Optional

import torch
from torch import nn

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.strategies.plan import Plan, apply_trainable
from tunelab.tasks.base import Predictions, Task
from tunelab.errors import RunInterrupted
from tunelab.inference.precision import autocast_for
from tunelab.inference.predict import is_labelled, predict_split
from tunelab.training.accel import adamw_implementation
from tunelab.training.cache import ActivationCache
from tunelab.training.frozen_prefix import eval_frozen_prefix, prefix_schedule
from tunelab.training.callbacks import Callback, EarlyStoppingCallback, ModelView, TrainState, dispatch, metric_mode
from tunelab.training.checkpoint import Checkpoint, CheckpointStore, checkpoint_name
from tunelab.training.distributed import SINGLE, Distributed, gather_outputs
from tunelab.training.snapshot import add_rank_rng, restore_rank_rng, rng_state
from tunelab.training.bad_steps import BadStepGuard, skip_step, step_is_finite
from tunelab.training.loop_state import LoopState, capture, restore
from tunelab.training.prefix_feed import PrefixFeed
from tunelab.training.schedules import build_scheduler
from tunelab.training.sharded import (gather_into, is_sharded, set_gradient_sync, shard_twin, training_state_bytes,
                                      whole)
from tunelab.training.signals import StopRequest
from tunelab.training.step import optimizer_step, train_step

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
    state_mb: Optional[float] = None  # what this rank held of the training state (training/sharded.py)


class Trainer:
    def __init__(self, config: RunConfig, task: Task, label_names: list[str], loss_fn: nn.Module,
                 device: torch.device, pad_id: int, callbacks: Optional[list[Callback]] = None,
                 activation_cache: Optional[ActivationCache] = None, dist: Distributed = SINGLE) -> None:
        self.config, self.task, self.label_names = config, task, label_names
        self.loss_fn, self.device, self.pad_id = loss_fn.to(device), device, pad_id
        self.callbacks = list(callbacks or [])
        self.dist = dist  # the process group's view: one process unless launched by torchrun
        self.feed = PrefixFeed(activation_cache, device=device, pad_id=pad_id, batch_size=config.train.batch_size,
                               precision=config.train.precision, seed=config.train.seed, dist=dist)
        self._schedule: list[Optional[int]] = []

    @property
    def activation_cache(self) -> Optional[ActivationCache]:
        """The cache in use: None when none was given or the model could not be served from it."""
        return self.feed.cache

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: EncodedSplit) -> EvalResult:
        """Loss, metrics and predictions on `split`; under torchrun each rank predicts every world_size-th
        batch and the outputs are gathered, so every rank holds the single-process figures."""
        return self.score(model, split, self.task, self.label_names, self.loss_fn)

    def score(self, model: nn.Module, split: EncodedSplit, task: Task, label_names: list[str],
              loss_fn: nn.Module) -> EvalResult:
        """`evaluate` with the task, labels and loss given (one task's of several on a backbone)."""
        batch_size = self.config.train.evaluation_batch_size
        batches = self.feed.batches(model, split, batch_size, shuffle=False)
        if self.dist.active:
            outputs, loss = gather_outputs(self.dist, model, split, task, batches, self.device,
                                           self.config.train.precision, loss_fn)
            predictions = task.predict(outputs, label_names, split)
        else:
            predictions, loss = predict_split(model, split, task, label_names, batch_size=batch_size,
                                              pad_id=self.feed.pad_id, device=self.device,
                                              precision=self.config.train.precision, loss_fn=loss_fn,
                                              batches=batches)
        metrics = task.metrics(split, predictions, label_names) if is_labelled(split) else {}
        return EvalResult(loss=loss, metrics={"loss": loss, **metrics}, predictions=predictions)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, model: nn.Module, plan: Plan, train: EncodedSplit, validation: Optional[EncodedSplit], *,
            checkpoints: Optional[CheckpointStore] = None, resume: Optional[Checkpoint] = None,
            stop: Optional[StopRequest] = None, identity: Optional[dict[str, Any]] = None) -> FitResult:
        """Train `model` as `plan` says. With `checkpoints`, write one every `train.checkpoint_every_steps`
        and at each epoch end; with `resume`, continue from that checkpoint exactly where it was taken.
        When `stop` rises (SIGINT/SIGTERM), finish the step, checkpoint and raise RunInterrupted."""
        self._checkpoints, self._stop, self._identity = checkpoints, stop, identity or {}
        self._stopping = False
        self.dist.seed_ranks(self.config.train.seed)
        loop = self._start(model, plan, train.num_batches(self.config.train.batch_size), validation)
        if resume is not None:
            restore(loop, resume, checkpoints)
            restore_rank_rng(resume, self.dist)
        self._schedule = prefix_schedule(model, plan, self.config.train.epochs)
        self.feed.start(model, self._schedule[loop.epoch:], [train, validation])
        dispatch(loop.callbacks, "on_fit_start", self._state(loop), loop.control)
        while loop.epoch < self.config.train.epochs and not loop.control.stop_training:
            self._train_epoch(loop, train)
            self._end_epoch(loop, validation)
        dispatch(loop.callbacks, "on_fit_end", self._state(loop, epoch=max(loop.epoch - 1, 0)), loop.control)
        if is_sharded(loop.model):  # FSDP trained a sharded twin: every rank gets the whole weights back
            gather_into(loop.model, model)
        if loop.best_state and self.config.early_stopping.restore_best:
            with torch.no_grad():
                named = dict(model.named_parameters())
                for name, value in loop.best_state.items():
                    named[name].copy_(whole(value))
        return FitResult(epochs_run=loop.epoch, steps=loop.step, best_epoch=loop.stopper.best_epoch,
                         best_metric=loop.stopper.best, stopped_early=loop.control.reason,
                         wall_time_s=time.perf_counter() - loop.start, history=loop.history,
                         state_mb=None if loop.state_bytes is None else round(loop.state_bytes / 2**20, 2))

    def _start(self, model: nn.Module, plan: Plan, micro_batches: int, validation: Optional[EncodedSplit]) -> LoopState:
        """Optimizer, schedule and callbacks for a fresh fit (a resume then overwrites their state)."""
        cfg = self.config.train
        model.to(self.device)
        apply_trainable(model, plan.trainable_at(0))
        if self.dist.sharded:  # FSDP: the optimizer steps the twin's shards
            model = shard_twin(model)
        optimizer = torch.optim.AdamW(plan.optimizer_groups(model), lr=self.config.optim.lr,
                                      betas=self.config.optim.betas, eps=self.config.optim.eps,
                                      **adamw_implementation(self.device))
        total_steps = -(-micro_batches // cfg.grad_accum_steps) * cfg.epochs
        early = self.config.early_stopping
        # on_best runs only during fit, after `loop` below exists
        stopper = EarlyStoppingCallback(early.metric, metric_mode(early.metric, early.mode), early.patience,
                                        lambda epoch, value: self._remember_best(loop))
        with_validation = validation is not None and len(validation) > 0
        loop = LoopState(model=model, plan=plan, optimizer=optimizer,
                         scheduler=build_scheduler(optimizer, self.config.schedule, total_steps),
                         params=[p for group in optimizer.param_groups for p in group["params"]], stopper=stopper,
                         callbacks=[*([stopper] if with_validation else []), *self.callbacks, *plan.callbacks],
                         guard=BadStepGuard(self.config), total_steps=total_steps, start=time.perf_counter())
        return loop

    def _remember_best(self, loop: LoopState) -> None:
        if self.config.early_stopping.restore_best:  # a copy of the weights only when it will be put back
            named = dict(loop.model.named_parameters())
            loop.best_state = {n: named[n].detach().clone() for n in sorted(loop.plan.ever_trainable)}
        loop.best_is_new = True

    def _state(self, loop: LoopState, metrics: Optional[dict] = None, events: tuple[str, ...] = (),
               epoch: Optional[int] = None) -> TrainState:
        groups = loop.optimizer.param_groups
        return TrainState(epoch=loop.epoch if epoch is None else epoch, epochs=self.config.train.epochs,
                          step=loop.step, total_steps=loop.total_steps, examples_seen=loop.seen, loss=loop.loss,
                          lr=max(g["lr"] for g in groups), elapsed=time.perf_counter() - loop.start,
                          metrics=metrics or {}, events=events, lrs=MappingProxyType({g["label"]: g["lr"] for g in groups}),
                          grad_norm=loop.grad_norm, rank=self.dist.rank, model=ModelView(loop.model))

    def _train_epoch(self, loop: LoopState, train: EncodedSplit) -> None:
        """The optimizer steps of `loop.epoch`, from micro-batch `loop.batch` on (0 unless resuming mid-epoch)."""
        cfg = self.config.train
        apply_trainable(loop.model, loop.plan.trainable_at(loop.epoch))
        if loop.batch == 0:
            dispatch(loop.callbacks, "on_epoch_start", self._state(loop, events=_events_at(loop)), loop.control)
        self._train_mode(loop.model, self._schedule[loop.epoch], loop.plan.keep_norm_statistics)
        autocast = autocast_for(self.device, cfg.precision)
        pending: list[float] = []
        batches = self.feed.batches(loop.model, train, cfg.batch_size, shuffle=True, epoch=loop.epoch)
        forward: Optional[nn.Module] = None
        last = train.num_batches(cfg.batch_size)
        # resuming mid-epoch: skip the batches already trained on, in the same (seed, epoch) order
        for batch in itertools.islice(batches, loop.batch, None):
            share = self.dist.share(batch).to(self.device)  # the whole batch in a single process
            if forward is None:  # DDP under torchrun, for the parameters this epoch trains
                forward = self.dist.wrap(loop.model, self.device, probe=share)
            # scale by the micro-batch's share so accumulated gradients equal one big batch's mean
            scale = self.dist.loss_scale(share, len(batch), cfg.batch_size * cfg.grad_accum_steps)
            sync = len(pending) + 1 == cfg.grad_accum_steps or loop.batch + 1 == last
            with _no_sync(forward, sync):
                loss = train_step(loop.model, share, self.loss_fn, autocast=autocast, scale=scale,
                                  loss_terms=loop.plan.loss_terms, output_terms=loop.plan.output_terms,
                                  task_weight=loop.plan.task_loss_weight, forward=forward)
            pending.append(self.dist.mean_by_weight(loss, scale))
            loop.batch, loop.seen = loop.batch + 1, loop.seen + len(batch)
            if len(pending) == cfg.grad_accum_steps:
                self._optimizer_step(loop, pending)
                pending = []
        if pending:
            self._optimizer_step(loop, pending)

    def _optimizer_step(self, loop: LoopState, losses: list[float]) -> None:
        """Apply the accumulated gradients unless they (or the loss) are NaN/Inf; then checkpoint if due."""
        good = step_is_finite(losses, loop.params)
        if loop.step == 1:  # the moments exist and the gradients are in: the training state at its largest
            loop.state_bytes = training_state_bytes(loop.model, loop.optimizer)
        if good:
            loop.grad_norm = optimizer_step(loop.optimizer, loop.scheduler, loop.params, self.config.train.max_grad_norm)
        else:
            skip_step(loop.optimizer, loop.scheduler)
            loop.grad_norm = None
        loop.step, loop.loss = loop.step + 1, sum(losses) / len(losses)
        loop.guard.record(loop.step, loop.epoch, good, loop.last_checkpoint)
        dispatch(loop.callbacks, "on_step_end", self._state(loop), loop.control)
        every = self.config.train.checkpoint_every_steps
        self._stopping = self.dist.any(bool(self._stop))  # every rank stops after the same step
        if self._stopping or (every and loop.step % every == 0):
            self._save(loop, epoch_end=False)
        self._check_stop(loop)

    def _end_epoch(self, loop: LoopState, validation: Optional[EncodedSplit]) -> None:
        """Evaluate, record, fire epoch-end events, then checkpoint at the start of the next epoch."""
        events = _events_at(loop)
        record: dict[str, Any] = {"epoch": loop.epoch, "train_loss": loop.loss, **({"events": list(events)} if events else {})}
        if validation is not None and len(validation):
            result = self.evaluate(loop.model, validation)
            record.update({k: v for k, v in result.metrics.items() if isinstance(v, float)})
            dispatch(loop.callbacks, "on_evaluate", self._state(loop, result.metrics), loop.control)
        loop.history.append(record)
        dispatch(loop.callbacks, "on_epoch_end", self._state(loop), loop.control)
        loop.epoch, loop.batch = loop.epoch + 1, 0
        self._save(loop, epoch_end=True)
        self._check_stop(loop)

    def _save(self, loop: LoopState, epoch_end: bool) -> None:
        # a step in a NaN streak is not written: the last checkpoint on disk stays the last good one
        if self._checkpoints is None or loop.guard.consecutive:
            return
        name = checkpoint_name(loop.step, epoch_end)
        if epoch_end and loop.best_is_new:
            loop.best_checkpoint, loop.best_is_new = name, False
        ranks_rng = self.dist.gather(rng_state()) if self.dist.active else None  # dropout draws differ by rank
        captured = capture(loop, self._identity) if self.dist.is_main or self.dist.sharded else None
        if self.dist.sharded:  # FSDP shards gathered whole (every rank takes part): the single-process format
            captured = (whole(captured[0]), captured[1])
        if not self.dist.is_main:  # rank 0 writes; the weights and state are the same on every rank
            loop.last_checkpoint = str(self._checkpoints.root / name)
            return
        tensors, state = captured
        if ranks_rng:
            add_rank_rng(tensors, state, ranks_rng)
        loop.last_checkpoint = str(self._checkpoints.save(name, tensors, state))

    def _check_stop(self, loop: LoopState) -> None:
        if self._stopping:
            saved = f"checkpoint written to {loop.last_checkpoint}" if loop.last_checkpoint else "no checkpoint written"
            raise RunInterrupted(f"{self._stop.name} received: stopped after step {loop.step} (epoch {loop.epoch + 1}, "
                                 f"batch {loop.batch}); {saved}", self._stop.signum or 2)

    # -- frozen prefix and activation cache -------------------------------------------------------
    def _train_mode(self, model: nn.Module, k: Optional[int], keep_norms: bool) -> None:
        """Train mode, except the frozen prefix (embeddings + blocks [0, k)), which runs in eval mode in
        both the cached and the recomputing path, so the two give the same model."""
        model.train()
        eval_frozen_prefix(model, k)
        if keep_norms:
            keep_norm_statistics(model)
        self.feed.frozen_k = k


def keep_norm_statistics(model: nn.Module) -> None:
    """Batch-norm layers of the backbone keep their pre-trained running statistics (eval mode) under a PEFT
    method: a PEFT result is saved as the base model plus its declared parameters, so statistics that moved
    during training would be lost on reload and the saved model would predict differently."""
    network = getattr(model, "network", model)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _no_sync(forward: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's no_sync (FSDP's equivalent) for a micro-batch that only accumulates: gradients are reduced once
    per optimizer step."""
    set_gradient_sync(forward, sync)
    if sync or not isinstance(forward, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return forward.no_sync()


def _events_at(loop: LoopState) -> tuple[str, ...]:
    """Plan events (gradual unfreezing) that apply at the start of `loop.epoch`."""
    return tuple(e.description for e in loop.plan.events if e.epoch == loop.epoch)
