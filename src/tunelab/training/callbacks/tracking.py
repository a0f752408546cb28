"""Experiment tracking: TensorBoard event files and MLflow runs, fed from the trainer's fixed events.

Per optimizer step: the loss, the learning rate of every param group, the gradient norm (before clipping) and
examples/s; per evaluation: every scalar validation metric; all at the step metrics.jsonl gives them. The
resolved config, flattened (`strategy.lora.rank`), is the run's hyperparameters. The test metrics and the
artifacts (`model/`, `report.html`, `config.yaml`) exist only once the run directory is committed, so
`finish_tracking` logs them then and closes the MLflow run; `abort_tracking` marks it failed or killed.

A compare or tune opens `tracking_parent(config, name)` around its loop: every MLflow run started inside it
is nested under that parent run (the `mlflow.parentRunId` tag, which is what `mlflow.start_run(nested=True)`
sets). MLflow is used through `MlflowClient` only, never its global active-run state, and imported only when
the config asks for it (it takes a second). Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from tunelab.config.schema import RunConfig
from tunelab.training.callbacks._mlflow import RECORD, MlflowCallback, ParentRun, run_status, tracking_parent
from tunelab.training.callbacks._scalars import flatten_config, metric_key, metric_scalars, step_scalars
from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["TENSORBOARD_DIR", "RECORD", "RunTracking", "ParentRun", "TensorBoardCallback", "MlflowCallback",
           "open_tracking", "finish_tracking", "abort_tracking", "tracking_parent", "flatten_config", "metric_key"]

TENSORBOARD_DIR = "tensorboard"   # <run dir>/tensorboard/: one TensorBoard run


class TensorBoardCallback(Callback):
    """Scalars into `<run dir>/tensorboard/` (the staging folder while the run trains)."""

    order = 60

    def __init__(self, log_dir: Path, config: RunConfig) -> None:
        self.log_dir, self.config = log_dir, config
        self.writer: Any = None
        self.active = False   # rank 0 saw on_fit_start
        self.last_step = 0

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        if state.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        # resuming from step S: events a killed run wrote after S are dropped, the steps are replayed
        self.writer = SummaryWriter(str(self.log_dir), purge_step=state.step + 1 if state.step else None,
                                    flush_secs=10)
        self.active, self.last_step = True, state.step
        if not state.step:
            rows = "\n".join(f"| {key} | {value} |" for key, value in flatten_config(self.config).items())
            self.writer.add_text("config", f"| key | value |\n|---|---|\n{rows}", 0)

    def on_step_end(self, state: TrainState, control: Control) -> None:
        if self.writer is not None:
            for tag, value in step_scalars(state).items():
                self.writer.add_scalar(tag, value, state.step)
            self.last_step = state.step

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        if self.writer is not None:
            for tag, value in metric_scalars("validation", state.metrics).items():
                self.writer.add_scalar(tag, value, state.step)
            self.writer.flush()

    def on_fit_end(self, state: TrainState, control: Control) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def write_outcome(self, run_dir: Path, test_metrics: Mapping[str, Any]) -> None:
        """The test metrics as scalars at the last step, and the HParams session (the flattened config against
        those metrics), in an event file written aside and moved into the committed run's folder."""
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        scalars = metric_scalars("test", test_metrics)
        folder = run_dir / TENSORBOARD_DIR
        aside = folder / f".tmp-outcome-{os.getpid()}"
        writer = SummaryWriter(str(aside))
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in flatten_config(self.config).items()}
        for summary in hparams(params, scalars):  # booleans as text: HParams would show them as 0.0 / 1.0
            writer.file_writer.add_summary(summary)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, self.last_step)
        writer.close()
        for events in aside.iterdir():
            events.rename(folder / events.name)
        shutil.rmtree(aside, ignore_errors=True)


# ---- one run's trackers ------------------------------------------------------------------------------------

@dataclass
class RunTracking:
    """The trackers of one run_one: its callbacks for the trainer, then its outcome or its failure."""

    tensorboard: Optional[TensorBoardCallback] = None
    mlflow: Optional[MlflowCallback] = None
    callbacks: list[Callback] = field(default_factory=list)


def open_tracking(config: RunConfig, staging: Path, target: Path) -> RunTracking:
    """The trackers `config.tracking` asks for, writing into the staging folder of the run bound for `target`
    (no callbacks when it asks for none)."""
    settings = config.tracking
    board = TensorBoardCallback(staging / TENSORBOARD_DIR, config) if settings.tensorboard else None
    flow = MlflowCallback(settings.mlflow, config, staging, target) if settings.mlflow is not None else None
    return RunTracking(board, flow, [c for c in (board, flow) if c is not None])


def finish_tracking(tracking: Optional[RunTracking], run_dir: Path, test_metrics: Mapping[str, Any]) -> None:
    """After the run directory is committed: test metrics, hyperparameters and artifacts, from rank 0."""
    if tracking is None:
        return
    if tracking.tensorboard is not None and tracking.tensorboard.active:
        tracking.tensorboard.close()
        tracking.tensorboard.write_outcome(run_dir, test_metrics)
    if tracking.mlflow is not None and tracking.mlflow.run_id is not None:
        tracking.mlflow.write_outcome(run_dir, test_metrics)


def abort_tracking(tracking: Optional[RunTracking], err: BaseException) -> None:
    """A failed or interrupted run: what was logged is kept, the MLflow run is marked FAILED or KILLED. Never
    raises (the run's own error is the one to report)."""
    if tracking is None:
        return
    with contextlib.suppress(Exception):
        if tracking.tensorboard is not None:
            tracking.tensorboard.close()
    flow = tracking.mlflow
    if flow is not None and flow.run_id is not None:
        with contextlib.suppress(Exception):
            flow.flush()
        with contextlib.suppress(Exception):
            flow.client.set_terminated(flow.run_id, run_status(err))
        flow.run_id = None
