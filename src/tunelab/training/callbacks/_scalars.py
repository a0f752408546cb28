"""The numbers and names every tracker logs: one key per scalar (valid in MLflow and TensorBoard), the
scalars of a step and of an evaluation, and the resolved config flattened into hyperparameters."""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Optional

from tunelab.config.schema import RunConfig
from tunelab.training.callbacks.base import TrainState

__all__ = ["metric_key", "flatten_config", "step_scalars", "metric_scalars"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./]")   # MLflow keys allow letters, digits, _ - . / (and spaces, colons)


def metric_key(*parts: str) -> str:
    """`("train", "lr", "lr=0.003 no_decay")` -> `train/lr/lr_0.003_no_decay`: a key MLflow accepts, and the
    same tag in TensorBoard."""
    return "/".join(_UNSAFE.sub("_", part) for part in parts)


def flatten_config(config: RunConfig) -> dict[str, Any]:
    """The resolved config as `{"optim.lr": 5e-05, "strategy.name": "partial", ...}`: numbers, booleans and
    strings as they are; lists and null as JSON text."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    walk("", config.model_dump(mode="json"))
    return flat


def step_scalars(state: TrainState) -> dict[str, float]:
    """What one optimizer step logs."""
    scalars = {"train/loss": float(state.loss),
               "train/examples_per_s": state.examples_seen / state.elapsed if state.elapsed > 0 else 0.0}
    if state.grad_norm is not None:
        scalars["train/grad_norm"] = float(state.grad_norm)
    scalars.update({metric_key("train", "lr", label): float(lr) for label, lr in state.lrs.items()})
    return scalars


def metric_scalars(prefix: Optional[str], metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of an evaluation's metrics (per-class tables and texts left out), as
    `<prefix>/<name>`."""
    return {metric_key(*([prefix] if prefix else []), str(name)): float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
