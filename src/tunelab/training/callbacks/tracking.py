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
import contextvars
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlparse

from tunelab.atomic import atomic_write_json
from tunelab.config.schema import MlflowConfig, RunConfig
from tunelab.errors import ConfigError, RunInterrupted
from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["TENSORBOARD_DIR", "RECORD", "RunTracking", "ParentRun", "TensorBoardCallback", "MlflowCallback",
           "open_tracking", "finish_tracking", "abort_tracking", "tracking_parent", "flatten_config", "metric_key"]

TENSORBOARD_DIR = "tensorboard"   # <run dir>/tensorboard/: one TensorBoard run
RECORD = "tracking.json"          # <run dir>/tracking.json: the MLflow run that holds this run (reopened on resume)
ARTIFACTS = ("model", "report.html", "config.yaml")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./]")   # MLflow keys allow letters, digits, _ - . / (and spaces, colons)
_PARAMS_PER_BATCH, _PARAM_CHARS = 100, 500   # MLflow's limits (500: a value's length on older servers)
_FLUSH_METRICS, _FLUSH_SECONDS = 200, 5.0


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


# ---- TensorBoard -------------------------------------------------------------------------------------------

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
        for summary in hparams(flatten_config(self.config), scalars):
            writer.file_writer.add_summary(summary)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, self.last_step)
        writer.close()
        for events in aside.iterdir():
            events.rename(folder / events.name)
        shutil.rmtree(aside, ignore_errors=True)


# ---- MLflow ------------------------------------------------------------------------------------------------

def _client(tracking_uri: str) -> Any:
    """An MlflowClient for `tracking_uri`. A local file store is what the config asked for, so tunelab opts in to
    it (MLflow >= 3.7 refuses one unless MLFLOW_ALLOW_FILE_STORE is set; a value the user set is kept)."""
    from mlflow import MlflowClient

    if urlparse(tracking_uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: Any, settings: MlflowConfig) -> str:
    found = client.get_experiment_by_name(settings.experiment)
    if found is None:
        return client.create_experiment(settings.experiment)
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"tracking.mlflow.experiment: {settings.experiment!r} is deleted in "
                          f"{settings.tracking_uri}; restore it (mlflow experiments restore) or choose another name")
    return found.experiment_id


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)[:_PARAM_CHARS]) for key, value in params.items()]
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + _PARAMS_PER_BATCH])


def _status(err: Optional[BaseException]) -> str:
    if err is None:
        return "FINISHED"
    return "KILLED" if isinstance(err, (KeyboardInterrupt, RunInterrupted)) else "FAILED"


@dataclass(frozen=True)
class ParentRun:
    """The MLflow run a compare or tune opened; the runs started inside `tracking_parent` nest under it."""

    client: Any
    settings: MlflowConfig
    experiment_id: str
    run_id: str

    def log_metrics(self, values: Mapping[str, Any], step: int = 0) -> None:
        """The numeric entries of `values` (a sweep's best score, ...) as metrics of the parent run."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step)
                                                    for key, value in metric_scalars(None, values).items()])

    def log_artifacts(self, *paths: Path) -> None:
        """Files (compare.json, ...) or folders, those that exist, at the artifact root."""
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))


_PARENT: contextvars.ContextVar[Optional[ParentRun]] = contextvars.ContextVar("tunelab_mlflow_parent", default=None)


@contextlib.contextmanager
def tracking_parent(config: RunConfig, name: str) -> Iterator[Optional[ParentRun]]:
    """Open a parent MLflow run named `name` (a comparison, a sweep) with `config` flattened as its params, for
    the duration of the block; runs started inside it with the same tracking URI and experiment are its
    children. Yields None (and does nothing) when the config does not ask for MLflow, or off rank 0. The parent
    ends FINISHED, or FAILED / KILLED when the block raises."""
    settings = config.tracking.mlflow
    if settings is None or int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    client = _client(settings.tracking_uri)
    experiment_id = _experiment_id(client, settings)
    run = client.create_run(experiment_id, run_name=name, tags={"tunelab.kind": "parent"})
    parent = ParentRun(client, settings, experiment_id, run.info.run_id)
    _log_params(client, parent.run_id, flatten_config(config))
    token = _PARENT.set(parent)
    error: Optional[BaseException] = None
    try:
        yield parent
    except BaseException as err:
        error = err
        raise
    finally:
        _PARENT.reset(token)
        client.set_terminated(parent.run_id, _status(error))


class MlflowCallback(Callback):
    """One MLflow run per training run: params at the start, metrics as they come (sent in batches), closed
    by `finish_tracking` / `abort_tracking`. Its id is kept in `<run dir>/tracking.json`, so a resumed run
    continues the same MLflow run."""

    order = 60

    def __init__(self, settings: MlflowConfig, config: RunConfig, staging: Path, target: Path) -> None:
        self.settings, self.config, self.staging, self.target = settings, config, staging, target
        self.client: Any = None
        self.run_id: Optional[str] = None
        self.pending: list[Any] = []
        self.flushed = time.monotonic()
        self.last_step = 0

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        if state.rank != 0:
            return
        self.client = _client(self.settings.tracking_uri)
        self.last_step = state.step
        self.run_id = self._reopen() or self._create()

    def _reopen(self) -> Optional[str]:
        """The MLflow run of the unfinished run being resumed, when the same store still holds it."""
        record = self.staging / RECORD
        if not record.is_file():
            return None
        saved = json.loads(record.read_text(encoding="utf-8")).get("mlflow", {})
        if saved.get("tracking_uri") != self.settings.tracking_uri:
            return None
        try:
            self.client.update_run(saved["run_id"], status="RUNNING")
        except Exception:  # noqa: BLE001 - deleted or from another store: start a new run
            return None
        return saved["run_id"]

    def _create(self) -> str:
        experiment_id = _experiment_id(self.client, self.settings)
        parent = _PARENT.get()
        tags = {"tunelab.run_dir": str(self.target), "tunelab.task": self.config.task,
                "tunelab.strategy": self.config.strategy.name, "tunelab.model": self.config.model.name}
        if parent is not None and parent.settings.tracking_uri == self.settings.tracking_uri \
                and parent.experiment_id == experiment_id:
            from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

            tags[MLFLOW_PARENT_RUN_ID] = parent.run_id
        run = self.client.create_run(experiment_id, run_name=self.settings.run_name or self.target.name, tags=tags)
        _log_params(self.client, run.info.run_id, flatten_config(self.config))
        atomic_write_json(self.staging / RECORD, {"mlflow": {
            "tracking_uri": self.settings.tracking_uri, "experiment_id": experiment_id, "run_id": run.info.run_id,
            "parent_run_id": tags.get("mlflow.parentRunId")}})
        return run.info.run_id

    def add(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, value, now, step) for key, value in scalars.items()]

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):   # MLflow takes at most 1,000 metrics a batch
            self.client.log_batch(self.run_id, metrics=self.pending[start:start + 1000])
        self.pending, self.flushed = [], time.monotonic()

    def on_step_end(self, state: TrainState, control: Control) -> None:
        if self.run_id is not None:
            self.add(step_scalars(state), state.step)
            self.last_step = state.step
            if len(self.pending) >= _FLUSH_METRICS or time.monotonic() - self.flushed >= _FLUSH_SECONDS:
                self.flush()

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        if self.run_id is not None:
            self.add(metric_scalars("validation", state.metrics), state.step)
            self.flush()

    def on_fit_end(self, state: TrainState, control: Control) -> None:
        if self.run_id is not None:
            self.flush()

    def write_outcome(self, run_dir: Path, test_metrics: Mapping[str, Any]) -> None:
        """Test metrics at the last step, the run's artifacts, and the run marked finished."""
        self.add(metric_scalars("test", test_metrics), self.last_step)
        self.flush()
        for name in ARTIFACTS:
            path = run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_tag(self.run_id, "tunelab.run_dir", str(run_dir))
        self.client.set_terminated(self.run_id, "FINISHED")
        self.run_id = None


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
            flow.client.set_terminated(flow.run_id, _status(err))
        flow.run_id = None
