"""Weight-space merging of models fine-tuned from one base: the weighted mean (linear; a model soup, Wortsman
et al. 2022), task arithmetic (Ilharco et al. 2023) and TIES (Yadav et al. 2023).

A model's tensors fall in three kinds (`split_names`):
- merged: the embeddings' and blocks' parameters, which every run started from the same pre-trained values, so
  a run's task vector `theta_i - theta_0` is defined; the methods differ in how they combine these.
- averaged: the head (the LayerStack's head group: a BERT classifier's pooler and classifier) and floating
  buffers (batch-norm statistics). A run's classifier starts from its own seeded random draw, not from a
  shared pre-trained value, so it has no task vector; every method takes the (weighted) mean of the heads.
  For a linear head on the same features that mean is the mean of the heads' logits: what an ensemble does
  with its last layer. Statistics are not learned weights and are averaged likewise.
- fixed: integer buffers (position ids, counters), equal in every run; the first run's are kept.

Merged tensors are flattened into one vector per run (`WeightSpace.runs`, `(n, D)`), because TIES trims the
top-k% of each task vector as a whole, as its reference code does (`topk_values_mask` over the flattened
vector), not tensor by tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from tunelab.models.task_model import TaskModel

__all__ = ["Tensors", "WeightSpace", "split_names", "linear_merge", "task_arithmetic", "ties_merge", "ties_vector",
           "trim", "elect_sign", "disjoint_mean"]

Tensors = dict[str, torch.Tensor]


def split_names(model: TaskModel) -> tuple[list[str], list[str], list[str]]:
    """(merged, averaged, fixed) state-dict names of `model`, as the module docstring says."""
    stack = model.layer_stack
    params = {name for name, _ in model.named_parameters()}
    merged, averaged, fixed = [], [], []
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            fixed.append(name)
        elif name in params and stack.group_of(name) != stack.head_group:
            merged.append(name)
        else:
            averaged.append(name)
    return merged, averaged, fixed


@dataclass
class WeightSpace:
    """The runs' tensors, as the methods read them: the merged ones flat (`base` `(D,)`, `runs` `(n, D)`), the
    averaged ones per run, and the fixed ones of the first run."""

    names: list[str]
    shapes: list[torch.Size]
    base: torch.Tensor
    runs: torch.Tensor
    averaged: list[Tensors]
    fixed: Tensors

    @classmethod
    def of(cls, base: Tensors, runs: Sequence[Tensors], model: TaskModel) -> "WeightSpace":
        """`base`: the pre-trained model's state dict (its head is never read); `runs`: each fine-tuned model's,
        with `model`'s names (a model of that architecture says which tensor is which kind)."""
        return cls.from_names(base, runs, *split_names(model))

    @classmethod
    def from_names(cls, base: Tensors, runs: Sequence[Tensors], merged: list[str], averaged: list[str],
                   fixed: list[str]) -> "WeightSpace":
        """Copies of every tensor: a state dict's tensors are the live parameters of its model, which a search
        loads other weights into."""
        def flat(state: Tensors) -> torch.Tensor:
            return torch.cat([state[n].detach().reshape(-1).float() for n in merged]) if merged else torch.zeros(0)

        return cls(names=list(merged), shapes=[base[n].shape for n in merged], base=flat(base),
                   runs=torch.stack([flat(state) for state in runs]),
                   averaged=[{n: state[n].detach().float().clone() for n in averaged} for state in runs],
                   fixed={n: runs[0][n].detach().clone() for n in fixed})

    def __len__(self) -> int:
        return int(self.runs.shape[0])

    def vectors(self) -> torch.Tensor:
        """The task vectors `theta_i - theta_0`, `(n, D)`."""
        return self.runs - self.base

    def state(self, flat: torch.Tensor, weights: Sequence[float]) -> Tensors:
        """A state dict: `flat` `(D,)` back into the merged tensors, the averaged ones as the `weights`-mean of
        the runs' (weights summing to 1), the fixed ones as they are."""
        out: Tensors = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes):
            size = shape.numel()
            out[name] = flat[offset:offset + size].reshape(shape).clone()
            offset += size
        for name in self.averaged[0]:
            out[name] = sum(w * run[name] for w, run in zip(weights, self.averaged))
        return {**out, **{n: t.clone() for n, t in self.fixed.items()}}

    def uniform(self) -> list[float]:
        return [1.0 / len(self)] * len(self)


def linear_merge(space: WeightSpace, weights: Sequence[float]) -> Tensors:
    """sum_i w_i theta_i (weights summing to 1): every tensor the same weighted mean."""
    w = torch.tensor(list(weights), dtype=space.runs.dtype)
    return space.state(w @ space.runs, weights)


def task_arithmetic(space: WeightSpace, lam: float) -> Tensors:
    """theta_0 + lambda * sum_i tau_i (Ilharco et al. 2023); heads averaged."""
    return space.state(space.base + lam * space.vectors().sum(0), space.uniform())


def ties_merge(space: WeightSpace, density: float, lam: float, merged: torch.Tensor | None = None) -> Tensors:
    """theta_0 + lambda * tau_m, tau_m the TIES vector at `density` (pass it as `merged` when it is computed
    already: it does not depend on lambda); heads averaged."""
    tau = ties_vector(space.vectors(), density) if merged is None else merged
    return space.state(space.base + lam * tau, space.uniform())


def ties_vector(vectors: torch.Tensor, density: float) -> torch.Tensor:
    """Trim, elect, disjoint mean (Yadav et al. 2023) of task vectors `(n, D)` -> `(D,)`."""
    trimmed = trim(vectors, density)
    return disjoint_mean(trimmed, elect_sign(trimmed))


def trim(vectors: torch.Tensor, density: float) -> torch.Tensor:
    """Each task vector (row) keeps its m = int(D * density) entries of largest magnitude (at least one; entries
    tied with the m-th are kept too), the rest set to 0; density 1 keeps everything. (The reference code's
    threshold is one place lower and keeps m + 1; on millions of entries that is the same.)"""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    d = vectors.shape[1]
    keep = max(1, int(d * density))
    if keep >= d:
        return vectors.clone()
    out = torch.empty_like(vectors)
    for i, row in enumerate(vectors):  # a row at a time: one task vector's temporaries, not n of them
        magnitude = row.abs()
        threshold = magnitude.kthvalue(d - keep + 1).values  # the keep-th largest magnitude
        torch.where(magnitude >= threshold, row, torch.zeros((), dtype=row.dtype), out=out[i])
    return out


def elect_sign(trimmed: torch.Tensor) -> torch.Tensor:
    """The sign of each entry's total mass over the runs, `(D,)`; an entry whose mass is exactly 0 takes the sign
    of the whole sum (the reference code's "majority" rule)."""
    sign = torch.sign(trimmed.sum(0))
    majority = torch.sign(sign.sum())
    return torch.where(sign == 0, majority, sign)


def disjoint_mean(trimmed: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Per entry, the mean of the runs' values that agree with the elected sign (zeros never count); 0 where
    none agrees."""
    total = torch.zeros_like(sign)
    count = torch.zeros_like(sign)
    for row in trimmed:
        agree = torch.where(sign > 0, row > 0, row < 0)
        total += row * agree
        count += agree
    return total / count.clamp(min=1)
