"""Backbones, the LayerStack view of them, heads and the TaskModel."""

from tunelab.models.layerstack import LayerStack, discover_layer_stack
from tunelab.models.loading import build_task_model, count_parameters, load_tokenizer, parameter_count, resolve_model_dir
from tunelab.models.task_model import TaskModel

__all__ = ["LayerStack", "discover_layer_stack", "TaskModel", "build_task_model", "load_tokenizer",
           "resolve_model_dir", "count_parameters", "parameter_count"]
