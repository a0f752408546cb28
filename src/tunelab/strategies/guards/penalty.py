"""The anchored penalty every guard adds to the loss: sum_i w_i (theta_i - theta0_i)^2 over the parameters it
holds, plus sum w ||delta||^2 for inserted layers whose update is a weight delta (LoRA: theta - theta0 of the
base weight is exactly the delta). w = 1 (L2-SP) or the diagonal Fisher (EWC). It times itself, so the guard
can report what it cost."""

from __future__ import annotations

import time
from typing import Any, Optional

import torch
from torch import nn

from tunelab.errors import ModelError

__all__ = ["AnchorPenalty"]


class AnchorPenalty:
    """`LossTerm.compute` of a guard: called as `penalty(model, batch)` -> scalar tensor."""

    def __init__(self, guard: str, model: nn.Module, direct: list[str], deltas: dict[str, str], *,
                 needs_fisher: bool = False) -> None:
        params = dict(model.named_parameters())
        self.guard, self.direct, self.deltas = guard, list(direct), dict(deltas)
        self.anchors = {n: params[n].detach().clone() for n in self.direct}   # theta0, on the model's device now
        self.held = sum(a.numel() for a in self.anchors.values()) + sum(params[n].numel() for n in self.deltas.values())
        self.weights: Optional[dict[str, torch.Tensor]] = None
        self.needs_fisher = needs_fisher
        self.seconds, self.calls, self.last = 0.0, 0, 0.0
        self._model_id: Optional[int] = None
        self._params: dict[str, nn.Parameter] = {}
        self._layers: dict[str, Any] = {}

    def weight_names(self) -> list[str]:
        """The parameters a Fisher is needed for: the held ones and the base weights the deltas change."""
        return [*self.direct, *self.deltas.values()]

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.weight_names() if n not in weights]
        if missing:
            raise ModelError(f"guard {self.guard}: the Fisher lacks {len(missing)} held parameters (first: {missing[0]}); "
                             "it was computed for another model or strategy: remove guards/fisher.safetensors")
        self.weights = {n: weights[n] for n in self.weight_names()}

    def _bind(self, model: nn.Module) -> None:
        if self._model_id == id(model):
            return
        self._params = dict(model.named_parameters())
        self._layers = {path: model.get_submodule(path) for path in self.deltas}
        self._model_id = id(model)

    def _term(self, key: str, change: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return change.float().pow(2).sum()
        weight = self.weights[key]
        if weight.device != change.device:
            weight = self.weights[key] = weight.to(change.device)
        return (weight * change.float().pow(2)).sum()

    def __call__(self, model: nn.Module, batch: Any = None) -> torch.Tensor:
        if self.needs_fisher and self.weights is None:
            raise ModelError(f"guard {self.guard}: the Fisher was never computed; build the run through run_one")
        started = time.perf_counter()
        self._bind(model)
        total = torch.zeros((), device=next(iter(self._params.values())).device)
        for name in self.direct:
            param, anchor = self._params[name], self.anchors[name]
            if anchor.device != param.device:
                anchor = self.anchors[name] = anchor.to(param.device)
            total = total + self._term(name, param - anchor)
        for path, base_name in self.deltas.items():
            total = total + self._term(base_name, self._layers[path].delta_weight())
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.last = total.detach()
        return total

    def state_bytes(self) -> int:
        tensors = [*self.anchors.values(), *(self.weights or {}).values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def held_count(self) -> int:
        """Weights the penalty holds: the anchored parameters and the base weights the deltas change."""
        return self.held
