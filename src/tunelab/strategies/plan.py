"""A Plan is what a strategy compiles to; the trainer only executes Plans.

Trainability is decided by name sets, never by substring guesses at train time, and applied by one
function (:func:`apply_trainable`), so counting, saving and freezing all agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is the trainer's; a Plan is built from config and names (validation never loads torch)
    import torch
    from torch import nn

    from tunelab.data.encoding import Batch

__all__ = ["Plan", "ParamGroup", "UnfreezeEvent", "LossTerm", "OutputTerm", "apply_trainable", "build_param_groups"]


@dataclass(frozen=True)
class LossTerm:
    """A term a strategy adds to the task's loss (a forgetting guard's penalty, replayed examples):
    `weight * compute(model, batch)`, a scalar tensor, differentiated with the task loss in the same step."""

    name: str
    compute: Callable[[nn.Module, Batch], torch.Tensor]
    weight: float = 1.0


@dataclass(frozen=True)
class OutputTerm:
    """A term on the step's own outputs (distillation: the student's logits against the teacher's for the batch's
    examples): `weight * compute(logits, batch)`, with the `(B, C)` logits of the forward pass the task loss
    reads, so nothing is run twice."""

    name: str
    compute: Callable[[torch.Tensor, Batch], torch.Tensor]
    weight: float = 1.0


@dataclass(frozen=True)
class UnfreezeEvent:
    """At the start of `epoch` (0-based), make `names` trainable."""

    epoch: int
    names: frozenset[str]
    description: str


@dataclass(frozen=True)
class ParamGroup:
    label: str
    names: tuple[str, ...]
    lr: float
    weight_decay: float


@dataclass
class Plan:
    strategy: str
    trainable: frozenset[str]                          # trainable from the first step
    groups: list[ParamGroup]                           # every parameter that trains at any time
    events: list[UnfreezeEvent] = field(default_factory=list)
    inserted: dict[str, nn.Module] = field(default_factory=dict)  # modules a PEFT method added, by path
    loss_terms: list[LossTerm] = field(default_factory=list)       # added to the task loss at every step
    output_terms: list[OutputTerm] = field(default_factory=list)   # likewise, computed from the step's logits
    task_loss_weight: float = 1.0                                  # the task loss's factor ((1 - alpha) distilling)
    callbacks: list[Any] = field(default_factory=list)             # training callbacks the strategy needs
    # batch-norm layers keep their pre-trained statistics (PEFT: the saved result is base + declared params)
    keep_norm_statistics: bool = False

    @property
    def ever_trainable(self) -> frozenset[str]:
        return frozenset(n for g in self.groups for n in g.names)

    def trainable_at(self, epoch: int) -> frozenset[str]:
        names = set(self.trainable)
        for event in self.events:
            if event.epoch <= epoch:
                names |= event.names
        return frozenset(names)

    def optimizer_groups(self, model: nn.Module) -> list[dict]:
        params = dict(model.named_parameters())
        return [
            {"params": [params[n] for n in g.names], "lr": g.lr, "weight_decay": g.weight_decay, "label": g.label}
            for g in self.groups if g.names
        ]


def apply_trainable(model: nn.Module, names: frozenset[str]) -> None:
    """The one place that sets `requires_grad`: exactly the named parameters train."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def build_param_groups(model: nn.Module, names: frozenset[str], lr_of: dict[str, float], weight_decay: float) -> list[ParamGroup]:
    """Group `names` by learning rate and decay; biases and norm weights (1-D tensors) get no weight decay,
    as in BERT and every recipe since."""
    params = dict(model.named_parameters())
    buckets: dict[tuple[float, bool], list[str]] = {}
    for name in sorted(names, key=list(params).index):
        no_decay = params[name].ndim <= 1
        buckets.setdefault((lr_of[name], no_decay), []).append(name)
    return [
        ParamGroup(label=f"lr={lr:.3g}{' no_decay' if no_decay else ''}", names=tuple(group), lr=lr,
                   weight_decay=0.0 if no_decay else weight_decay)
        for (lr, no_decay), group in sorted(buckets.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


