"""MLflow runs: one per training run (`MlflowCallback`), and a parent run that a compare or tune opens around
its loop (`tracking_parent`), under which the runs started inside it nest (the `mlflow.parentRunId` tag, which
is what `mlflow.start_run(nested=True)` sets). Only `MlflowClient` is used, never MLflow's global active-run
state, and mlflow is imported only when a config asks for it (it takes a second)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlparse

from tunelab.atomic import atomic_write_json
from tunelab.config.schema import MlflowConfig, RunConfig
from tunelab.errors import ConfigError, RunInterrupted
from tunelab.training.callbacks._scalars import flatten_config, metric_scalars, step_scalars
from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["RECORD", "ARTIFACTS", "MlflowCallback", "ParentRun", "tracking_parent", "run_status"]

RECORD = "tracking.json"          # <run dir>/tracking.json: the MLflow run that holds this run (reopened on resume)
ARTIFACTS = ("model", "report.html", "config.yaml")
_PARAMS_PER_BATCH, _PARAM_CHARS = 100, 500   # MLflow's limits (500: a value's length on older servers)
_FLUSH_METRICS, _FLUSH_SECONDS = 200, 5.0


def _client(tracking_uri: str) -> Any:
    """An MlflowClient for `tracking_uri`. A local file store is what the config asked for, so tunelab opts in to
    it (MLflow >= 3.7 refuses one unless MLFLOW_ALLOW_FILE_STORE is set; a value the user set is kept)."""
    from mlflow import MlflowClient

    if urlparse(tracking_uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: Any, settings: MlflowConfig) -> str:
    found = client.get_experiment_by_name(settings.experiment)
    if found is None:  # the kind makes MLflow 3's UI open the experiment on its runs, not on LLM traces
        return client.create_experiment(settings.experiment, tags={"mlflow.experimentKind": "custom_model_development"})
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"tracking.mlflow.experiment: {settings.experiment!r} is deleted in "
                          f"{settings.tracking_uri}; restore it (mlflow experiments restore) or choose another name")
    return found.experiment_id


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)[:_PARAM_CHARS]) for key, value in params.items()]
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + _PARAMS_PER_BATCH])


def run_status(err: Optional[BaseException]) -> str:
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
        client.set_terminated(parent.run_id, run_status(error))


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
