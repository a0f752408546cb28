"""Append one JSON line per optimizer step and per evaluation to metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["MetricsLogCallback"]


class MetricsLogCallback(Callback):
    order = 50

    def __init__(self, path: Path, every_steps: int = 1) -> None:
        self.path = path
        self.every_steps = every_steps
        self.handle = None

    def _write(self, row: dict[str, Any]) -> None:
        if self.handle is None:
            self.handle = self.path.open("a", encoding="utf-8")
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def on_step_end(self, state: TrainState, control: Control) -> None:
        if state.step % self.every_steps == 0:
            self._write({"kind": "train", "epoch": state.epoch, "step": state.step, "loss": state.loss,
                         "lr": state.lr, "examples": state.examples_seen, "elapsed_s": round(state.elapsed, 3)})

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        scalars = {k: v for k, v in state.metrics.items() if isinstance(v, (int, float))}
        self._write({"kind": "validation", "epoch": state.epoch, "step": state.step, **scalars})

    def on_fit_end(self, state: TrainState, control: Control) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
