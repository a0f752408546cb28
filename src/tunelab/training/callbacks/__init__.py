"""Trainer callbacks: fixed events, read-only state, named control signals."""

from tunelab.training.callbacks.base import EVENTS, Callback, Control, ModelView, TrainState, dispatch
from tunelab.training.callbacks.early_stopping import EarlyStoppingCallback, metric_mode
from tunelab.training.callbacks.metrics_log import MetricsLogCallback
from tunelab.training.callbacks.progress import ProgressCallback

__all__ = ["EVENTS", "Callback", "Control", "ModelView", "TrainState", "dispatch", "EarlyStoppingCallback", "metric_mode",
           "MetricsLogCallback", "ProgressCallback"]
