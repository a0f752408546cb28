"""Callbacks: a fixed list of events, a read-only state, and control through named signals.

A callback never touches the optimizer; it reads `TrainState` (the model through a read-only view of its
parameters) and may set `Control.stop_training`. Tracking reads the per-group learning rates and the gradient
norm; forgetting guards read the parameters; `rank` is this process's rank (0 in a single process), so a
callback can write only on rank 0. An exception inside a callback is re-raised naming the callback and event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn

__all__ = ["EVENTS", "Callback", "TrainState", "Control", "CallbackError", "ModelView", "dispatch"]

EVENTS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_evaluate", "on_epoch_end", "on_fit_end")


class ModelView:
    """Read access to the model being trained: its parameters, detached (no autograd history; a callback that
    needs them changed asks through `Control`, never by writing)."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, param in self._model.named_parameters():
            yield name, param.detach()

    def trainable_names(self) -> list[str]:
        return [name for name, param in self._model.named_parameters() if param.requires_grad]

    @property
    def training(self) -> bool:
        return self._model.training


@dataclass(frozen=True)
class TrainState:
    epoch: int                  # 0-based current epoch
    epochs: int
    step: int                   # optimizer steps done
    total_steps: int
    examples_seen: int
    loss: float                 # mean loss of the last optimizer step
    lr: float                   # learning rate of the head's group (the largest)
    elapsed: float              # seconds since fit start
    metrics: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # last evaluation
    events: tuple[str, ...] = ()  # plan events applied at this epoch start ("unfreeze block 4")
    lrs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # per optimizer group label
    grad_norm: Optional[float] = None  # norm of the last step's gradients, before clipping
    rank: int = 0                      # torch.distributed rank; 0 in a single process
    model: Optional[ModelView] = None


@dataclass
class Control:
    stop_training: bool = False
    reason: str = ""


class CallbackError(RuntimeError):
    pass


class Callback:
    order: int = 0

    def on_fit_start(self, state: TrainState, control: Control) -> None: ...
    def on_epoch_start(self, state: TrainState, control: Control) -> None: ...
    def on_step_end(self, state: TrainState, control: Control) -> None: ...
    def on_evaluate(self, state: TrainState, control: Control) -> None: ...
    def on_epoch_end(self, state: TrainState, control: Control) -> None: ...
    def on_fit_end(self, state: TrainState, control: Control) -> None: ...


def dispatch(callbacks: list[Callback], event: str, state: TrainState, control: Control) -> None:
    assert event in EVENTS, event
    for callback in sorted(callbacks, key=lambda c: c.order):
        try:
            getattr(callback, event)(state, control)
        except Exception as err:
            if getattr(err, "is_user_error", False) or err.__class__.__module__.startswith("tunelab.errors"):
                raise
            raise CallbackError(f"callback {type(callback).__name__} failed in {event}: {err!r}") from err
