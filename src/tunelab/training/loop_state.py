"""Everything `Trainer.fit` changes while it runs, in one object, so a checkpoint is a snapshot of it.

`capture` turns a LoopState into (tensors, JSON state) for :class:`CheckpointStore`; `restore` puts a
checkpoint back. Together with the deterministic batch order (a function of seed and epoch) this is what
makes a resumed run bit-identical to an uninterrupted one: the same weights, optimizer moments, LR schedule
position and RNG streams (dropout), at the same batch of the same epoch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.strategies.plan import Plan
from tunelab.training.callbacks import Callback, Control, EarlyStoppingCallback
from tunelab.training.checkpoint import Checkpoint, CheckpointStore
from tunelab.training.bad_steps import BadStepGuard
from tunelab.training.sharded import shard_like, shard_optimizer_state
from tunelab.training.snapshot import (load_optimizer_state, load_rng_state, load_scheduler_state, optimizer_state,
                                       rng_state, scheduler_state)

__all__ = ["LoopState", "capture", "restore", "check_weights"]


@dataclass
class LoopState:
    model: nn.Module
    plan: Plan
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[nn.Parameter]
    stopper: EarlyStoppingCallback
    callbacks: list[Callback]
    guard: BadStepGuard
    total_steps: int
    start: float
    control: Control = field(default_factory=Control)
    epoch: int = 0                 # the epoch being trained (after an epoch ends: the next one)
    batch: int = 0                 # micro-batches of `epoch` already consumed, in the (seed, epoch) order
    step: int = 0                  # optimizer steps done (skipped bad steps included)
    seen: int = 0
    loss: float = 0.0
    grad_norm: Optional[float] = None   # of the last applied step (None after a skipped one)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_is_new: bool = False      # the last evaluation was the best so far: the next epoch-end checkpoint is "best"
    best_checkpoint: Optional[str] = None
    last_checkpoint: Optional[str] = None
    state_bytes: Optional[int] = None  # this rank's parameters + gradients + optimizer moments, at step 2


def capture(loop: LoopState, identity: dict[str, Any]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The checkpoint content of `loop`: weights of every ever-trainable parameter, optimizer, RNG, counters."""
    named = dict(loop.model.named_parameters())
    model = {name: named[name].detach() for name in sorted(loop.plan.ever_trainable)}
    optim_tensors, optim_meta = optimizer_state(loop.optimizer)
    rng_tensors, rng_meta = rng_state()
    stopper = loop.stopper
    state = {
        "identity": identity,
        "position": {"epoch": loop.epoch, "batch": loop.batch, "step": loop.step, "examples_seen": loop.seen},
        "loss": loop.loss,
        "history": loop.history,
        "optimizer": optim_meta,
        "scheduler": scheduler_state(loop.scheduler),
        "grad_scaler": None,  # fp32/bf16 need no loss scaling; an fp16 scaler would be saved here
        "rng": rng_meta,
        "early_stopping": {"best": stopper.best, "best_epoch": stopper.best_epoch, "bad_epochs": stopper.bad_epochs},
        "control": {"stop_training": loop.control.stop_training, "reason": loop.control.reason},
        "unfreezing": {"epoch": loop.epoch, "trainable": len(loop.plan.trainable_at(loop.epoch)),
                       "events_applied": [e.description for e in loop.plan.events if e.epoch <= loop.epoch]},
        "bad_steps": {"consecutive": loop.guard.consecutive, "first_bad": loop.guard.first_bad},
        "best_checkpoint": loop.best_checkpoint,
    }
    return {"model": model, "optimizer": optim_tensors, "rng": rng_tensors}, state


def restore(loop: LoopState, checkpoint: Checkpoint, store: CheckpointStore) -> None:
    """Put `checkpoint` back into `loop` (weights, optimizer, schedule, counters, best weights, RNG last)."""
    state = checkpoint.state
    _load_weights(loop, checkpoint.tensors("model"), checkpoint)
    with _as_model_error(checkpoint, "optimizer state"):
        load_optimizer_state(loop.optimizer, checkpoint.tensors("optimizer"), state["optimizer"])
        shard_optimizer_state(loop.optimizer)  # FSDP: the whole moments cut like their shards (else no-op)
        load_scheduler_state(loop.scheduler, state["scheduler"])
    position = state["position"]
    loop.epoch, loop.batch, loop.step, loop.seen = (position["epoch"], position["batch"], position["step"],
                                                    position["examples_seen"])
    loop.loss, loop.history = state["loss"], list(state["history"])
    early = state["early_stopping"]
    loop.stopper.best, loop.stopper.best_epoch, loop.stopper.bad_epochs = (early["best"], early["best_epoch"],
                                                                          early["bad_epochs"])
    loop.control.stop_training, loop.control.reason = state["control"]["stop_training"], state["control"]["reason"]
    loop.guard.consecutive, loop.guard.first_bad = state["bad_steps"]["consecutive"], state["bad_steps"]["first_bad"]
    loop.last_checkpoint = str(checkpoint.path)
    best = state.get("best_checkpoint")
    if best:
        source = checkpoint if best == checkpoint.name else store.load(best)
        loop.best_state = {k: v.clone() for k, v in source.tensors("model").items()}
        loop.best_checkpoint = best
    load_rng_state(checkpoint.tensors("rng"), state["rng"])


def _load_weights(loop: LoopState, tensors: dict[str, torch.Tensor], checkpoint: Checkpoint) -> None:
    check_weights(checkpoint, loop.model, loop.plan, tensors)
    named = dict(loop.model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            named[name].copy_(shard_like(value, named[name]))


def check_weights(checkpoint: Checkpoint, model: nn.Module, plan: Plan,
                  tensors: Optional[dict[str, torch.Tensor]] = None) -> None:
    """Refuse a checkpoint whose parameter names or shapes are not this model's and plan's (before any file of
    the unfinished run is touched)."""
    tensors = checkpoint.tensors("model") if tensors is None else tensors
    named = dict(model.named_parameters())
    expected = set(plan.ever_trainable)
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ModelError(f"checkpoint {checkpoint.path} does not fit this model and strategy (missing "
                         f"{len(missing)} parameter(s) {missing[:3]}, unexpected {len(extra)} {extra[:3]}); it was "
                         "written by another model or strategy: resume with the config that wrote it, or start a "
                         "new run without --resume")
    for name, value in tensors.items():
        if value.shape != named[name].shape or value.dtype != named[name].dtype:
            raise ModelError(f"checkpoint {checkpoint.path}: parameter {name} has shape {tuple(value.shape)} "
                             f"{value.dtype}, the model has {tuple(named[name].shape)} {named[name].dtype}; it was "
                             "written by another model: resume with the config that wrote it, or start a new run")


@contextlib.contextmanager
def _as_model_error(checkpoint: Checkpoint, what: str):
    try:
        yield
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise ModelError(f"checkpoint {checkpoint.path}: its {what} does not fit this run ({err}); resume with "
                         "the config that wrote it, or start a new run without --resume") from None
