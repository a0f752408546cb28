"""The distillation term: the student's logits against the teacher's cached logits of the same examples."""

from __future__ import annotations

import time
from typing import Literal, Optional

import torch
from torch.nn import functional as F

from tunelab.data.encoding import Batch
from tunelab.errors import ModelError

__all__ = ["SoftTargets", "soft_target_loss", "DistillTerm"]

# how a task's logits become probabilities: one softmax over the classes, or a sigmoid per class (multilabel)
SoftTargets = Literal["softmax", "sigmoid"]


def soft_target_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                     kind: SoftTargets = "softmax") -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T) for `(B, C)` logits, where x_T = softmax(x / T) (summed over classes,
    mean over examples: KL per example), or, for `sigmoid`, the KL of each class's Bernoulli(sigmoid(x / T))
    averaged over every decision, as the multilabel BCE averages. 0 when the student equals the teacher."""
    t = temperature
    s, q = student.float() / t, teacher.float() / t
    if kind == "softmax":
        return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(q, dim=-1), reduction="batchmean",
                        log_target=True) * (t * t)
    p, log_p, log_not_p = torch.sigmoid(q), F.logsigmoid(q), F.logsigmoid(-q)
    kl = p * (log_p - F.logsigmoid(s)) + (1 - p) * (log_not_p - F.logsigmoid(-s))
    return kl.mean() * (t * t)


class DistillTerm:
    """`OutputTerm.compute`: the soft-target loss of a batch's logits against its examples' rows of the teacher's
    `(N, C)` logits (row i: example i of the training split, as `Batch.indices` counts). It times itself."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.teacher: Optional[torch.Tensor] = None
        self.kind: SoftTargets = "softmax"
        self.seconds, self.calls = 0.0, 0
        self.last: Optional[torch.Tensor] = None  # the last batch's term (a tensor: no device sync per step)

    def set_teacher(self, logits: torch.Tensor, kind: SoftTargets) -> None:
        self.teacher, self.kind = logits.float(), kind

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.teacher is None:
            raise ModelError("strategy.distill: the teacher's logits were never set; build the run through run_one")
        started = time.perf_counter()
        if self.teacher.device != logits.device:
            self.teacher = self.teacher.to(logits.device)
        rows = self.teacher[batch.indices.to(logits.device)]  # (B, C)
        loss = soft_target_loss(logits, rows, self.temperature, self.kind)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.last = loss.detach()
        return loss
